"""Neutral sentences for the synthetic corpus: English from a small grammar, others by hand.

The words carry no emotion, so a classifier can only learn the emotion from the voice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sentence:
    language: str  # "en" (read in any of ENGLISH_VOICES) or an espeak-ng language voice
    text: str  # without final punctuation: the emotion's rule adds it


_SUBJECTS = (
    "The old farmer",
    "My neighbour",
    "The new teacher",
    "Her brother",
    "The driver",
    "Our manager",
    "The little girl",
    "His cousin",
    "The engineer",
    "A tall man",
    "The doctor",
    "My sister",
    "The postman",
    "Their daughter",
    "The captain",
    "The student",
    "Your uncle",
    "The baker",
    "The pilot",
    "An old woman",
)
_VERBS = (
    "painted",
    "carried",
    "opened",
    "found",
    "moved",
    "checked",
    "cleaned",
    "sold",
    "bought",
    "counted",
    "closed",
    "borrowed",
    "fixed",
    "measured",
    "delivered",
    "described",
    "wrapped",
    "brought",
    "noticed",
    "ordered",
)
_OBJECTS = (
    "the red barn",
    "a wooden table",
    "the kitchen window",
    "two blue boxes",
    "the garden gate",
    "a heavy suitcase",
    "the yellow bicycle",
    "the map of the city",
    "a basket of apples",
    "the office door",
    "the small boat",
    "a pair of shoes",
    "the letters",
    "the green chairs",
    "a loaf of bread",
    "the train tickets",
    "the piano",
    "a bag of rice",
    "the radio",
    "the paper lanterns",
)
_ENDINGS = (
    "before the winter",
    "on Tuesday morning",
    "after lunch",
    "at seven o'clock",
    "near the station",
    "last weekend",
    "in the afternoon",
    "by the river",
    "this evening",
    "at the market",
    "behind the school",
    "during the holiday",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
)

_OTHER: dict[str, tuple[str, ...]] = {
    "de": (
        "Der Zug fährt um sieben Uhr ab",
        "Meine Schwester wohnt in der Stadt",
        "Das Fenster in der Küche ist offen",
        "Wir kaufen morgen frisches Brot",
        "Der Lehrer schreibt an die Tafel",
        "Die Kinder spielen im Garten",
        "Das Auto steht vor dem Haus",
        "Er trinkt jeden Morgen Kaffee",
        "Die Tür zum Büro ist geschlossen",
        "Am Dienstag gehen wir zum Markt",
        "Der Hund schläft unter dem Tisch",
        "Sie liest die Zeitung im Zug",
    ),
    "es": (
        "El tren sale a las siete",
        "Mi hermana vive en la ciudad",
        "La ventana de la cocina está abierta",
        "Mañana compramos pan fresco",
        "El profesor escribe en la pizarra",
        "Los niños juegan en el jardín",
        "El coche está delante de la casa",
        "Él toma café cada mañana",
        "La puerta de la oficina está cerrada",
        "El martes vamos al mercado",
        "El perro duerme debajo de la mesa",
        "Ella lee el periódico en el tren",
    ),
    "fr-fr": (
        "Le train part à sept heures",
        "Ma soeur habite en ville",
        "La fenêtre de la cuisine est ouverte",
        "Demain nous achetons du pain frais",
        "Le professeur écrit au tableau",
        "Les enfants jouent dans le jardin",
        "La voiture est devant la maison",
        "Il boit du café chaque matin",
        "La porte du bureau est fermée",
        "Mardi nous allons au marché",
        "Le chien dort sous la table",
        "Elle lit le journal dans le train",
    ),
    "it": (
        "Il treno parte alle sette",
        "Mia sorella abita in città",
        "La finestra della cucina è aperta",
        "Domani compriamo pane fresco",
        "Il maestro scrive sulla lavagna",
        "I bambini giocano in giardino",
        "La macchina è davanti alla casa",
        "Lui beve il caffè ogni mattina",
        "La porta dell'ufficio è chiusa",
        "Martedì andiamo al mercato",
        "Il cane dorme sotto il tavolo",
        "Lei legge il giornale sul treno",
    ),
    "nl": (
        "De trein vertrekt om zeven uur",
        "Mijn zus woont in de stad",
        "Het keukenraam staat open",
        "Morgen kopen we vers brood",
        "De leraar schrijft op het bord",
        "De kinderen spelen in de tuin",
        "De auto staat voor het huis",
        "Hij drinkt elke ochtend koffie",
        "De deur van het kantoor is dicht",
        "Dinsdag gaan we naar de markt",
        "De hond slaapt onder de tafel",
        "Zij leest de krant in de trein",
    ),
}

ENGLISH_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
OTHER_LANGUAGES = tuple(_OTHER)


def english_sentences(count: int, rng: np.random.Generator) -> list[Sentence]:
    """``count`` distinct sentences drawn from the grammar (half have no time or place phrase)."""
    parts = (_SUBJECTS, _VERBS, _OBJECTS, _ENDINGS)
    shape = tuple(len(p) for p in parts)
    total = int(np.prod(shape))
    distinct = total // len(_ENDINGS) * (len(set(_ENDINGS)))
    if not 0 < count <= distinct:
        raise ValueError(f"count must be in 1..{distinct}, got {count}")
    texts: dict[str, None] = {}
    for pick in rng.permutation(total):
        texts.setdefault(" ".join(_words(parts, np.unravel_index(pick, shape))), None)
        if len(texts) == count:
            break
    return [Sentence("en", text) for text in texts]


def _words(parts: tuple[tuple[str, ...], ...], indices: tuple[np.intp, ...]) -> list[str]:
    return [part[int(i)] for part, i in zip(parts, indices, strict=True) if part[int(i)]]


def other_sentences() -> list[Sentence]:
    return [Sentence(lang, text) for lang, texts in _OTHER.items() for text in texts]
