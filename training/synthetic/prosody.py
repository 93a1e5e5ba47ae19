"""Emotion prosody rules for synthetic speech, after Murray & Arnott (1993).

Each emotion is a set of parameter ranges relative to neutral speech; one utterance draws
one value from each range, so neighbouring emotions overlap. See docs/synthetic-corpus.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Range = tuple[float, float]


@dataclass(frozen=True)
class EmotionRule:
    """Parameter ranges for one emotion; every value is drawn uniformly from its range."""

    pitch_pct: Range  # SSML <prosody pitch>, relative to the voice's own level
    range_pct: Range  # SSML <prosody range>, relative width of the pitch excursions
    rate_pct: Range  # SSML <prosody rate>, 100 = the voice's normal speed
    gain_db: Range  # level change before the channel's own level change
    tilt: Range  # spectral tilt: > 0 pre-emphasis (tense, bright), < 0 low-pass (soft, dark)
    glide: Range  # pitch glide over the final 40 % of the utterance (ratio - 1)
    step_pct: Range  # abrupt pitch steps every 200-400 ms (percent, alternating sign)
    tremor_pct: Range  # sinusoidal pitch modulation at 5-9 Hz (percent)
    jitter_pct: Range  # random cycle-to-cycle pitch perturbation (percent)
    breath_db: Range  # aspiration noise level relative to the voice (dB); <= -60 means none
    creak: Range  # depth of low-rate irregular amplitude pulsing (vocal fry), 0..1
    terminal: str  # sentence-final punctuation, which sets espeak-ng's clause intonation


NONE: Range = (0.0, 0.0)
NO_BREATH: Range = (-80.0, -80.0)

RULES: dict[str, EmotionRule] = {
    "neutral": EmotionRule(
        pitch_pct=(-8, 8),
        range_pct=(-25, 25),
        rate_pct=(90, 110),
        gain_db=(-2, 2),
        tilt=(-0.15, 0.15),
        glide=(-0.03, 0.0),
        step_pct=NONE,
        tremor_pct=NONE,
        jitter_pct=(0.0, 0.3),
        breath_db=NO_BREATH,
        creak=NONE,
        terminal=".",
    ),
    "happy": EmotionRule(
        pitch_pct=(15, 40),
        range_pct=(60, 130),
        rate_pct=(104, 124),
        gain_db=(1, 4),
        tilt=(0.05, 0.35),
        glide=(0.06, 0.16),
        step_pct=NONE,
        tremor_pct=NONE,
        jitter_pct=(0.0, 0.3),
        breath_db=(-32, -22),
        creak=NONE,
        terminal="!",
    ),
    "sad": EmotionRule(
        pitch_pct=(-18, -4),
        range_pct=(-75, -40),
        rate_pct=(72, 88),
        gain_db=(-8, -3),
        tilt=(-0.7, -0.35),
        glide=(-0.08, -0.03),
        step_pct=NONE,
        tremor_pct=NONE,
        jitter_pct=(0.0, 0.4),
        breath_db=(-34, -24),
        creak=NONE,
        terminal=".",
    ),
    "angry": EmotionRule(
        pitch_pct=(10, 30),
        range_pct=(80, 160),
        rate_pct=(105, 122),
        gain_db=(4, 8),
        tilt=(0.45, 0.8),
        glide=(-0.05, 0.0),
        step_pct=(5, 10),
        tremor_pct=NONE,
        jitter_pct=(0.3, 0.8),
        breath_db=(-40, -30),
        creak=NONE,
        terminal="!",
    ),
    "fearful": EmotionRule(
        pitch_pct=(30, 60),
        range_pct=(20, 70),
        rate_pct=(125, 150),
        gain_db=(-1, 2),
        tilt=(-0.05, 0.25),
        glide=(0.0, 0.05),
        step_pct=NONE,
        tremor_pct=(2.5, 6.0),
        jitter_pct=(0.8, 1.8),
        breath_db=(-28, -18),
        creak=NONE,
        terminal="?",
    ),
    "disgust": EmotionRule(
        pitch_pct=(-30, -14),
        range_pct=(10, 45),
        rate_pct=(58, 76),
        gain_db=(-4, -1),
        tilt=(-0.35, 0.0),
        glide=(-0.18, -0.08),
        step_pct=NONE,
        tremor_pct=NONE,
        jitter_pct=(0.3, 0.9),
        breath_db=NO_BREATH,
        creak=(0.35, 0.75),
        terminal=".",
    ),
}

EMOTIONS: tuple[str, ...] = tuple(RULES)


@dataclass(frozen=True)
class Prosody:
    """One utterance's drawn parameters (see ``EmotionRule`` for their meaning)."""

    emotion: str
    pitch_pct: float
    range_pct: float
    rate_pct: float
    gain_db: float
    tilt: float
    glide: float
    step_pct: float
    tremor_pct: float
    tremor_hz: float
    jitter_pct: float
    breath_db: float
    creak: float
    creak_hz: float
    terminal: str


def _draw(rng: np.random.Generator, bounds: Range) -> float:
    low, high = bounds
    return float(rng.uniform(low, high)) if high > low else float(low)


def sample_prosody(emotion: str, rng: np.random.Generator) -> Prosody:
    """Draw one utterance's parameters for ``emotion``."""
    if emotion not in RULES:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {list(RULES)}")
    rule = RULES[emotion]
    return Prosody(
        emotion=emotion,
        pitch_pct=_draw(rng, rule.pitch_pct),
        range_pct=_draw(rng, rule.range_pct),
        rate_pct=_draw(rng, rule.rate_pct),
        gain_db=_draw(rng, rule.gain_db),
        tilt=_draw(rng, rule.tilt),
        glide=_draw(rng, rule.glide),
        step_pct=_draw(rng, rule.step_pct),
        tremor_pct=_draw(rng, rule.tremor_pct),
        tremor_hz=float(rng.uniform(5.0, 9.0)),
        jitter_pct=_draw(rng, rule.jitter_pct),
        breath_db=_draw(rng, rule.breath_db),
        creak=_draw(rng, rule.creak),
        creak_hz=float(rng.uniform(30.0, 60.0)),
        terminal=rule.terminal,
    )
