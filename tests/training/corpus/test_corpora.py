from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus.corpora import (
    LABEL_MAP,
    CorpusError,
    dedupe,
    parse_mapping,
    read_corpus,
)


def _wav(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(800, 0.1, dtype=np.float32), 16000)
    return path


def _corrupt(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    return path


def _by_name(scan_clips: list) -> dict[str, tuple[str, str, str]]:
    return {c.path.name: (c.label, c.speaker, c.text) for c in scan_clips}


def _problems(scan) -> dict[str, str]:
    return {p.path.name: p.reason for p in scan.problems}


def test_ravdess(tmp_path: Path) -> None:
    _wav(tmp_path, "Actor_12/03-01-05-01-02-01-12.wav")
    _wav(tmp_path, "Actor_01/03-01-02-02-01-02-01.wav")  # calm → neutral
    _wav(tmp_path, "Actor_01/03-01-08-01-01-01-01.wav")  # surprised → dropped
    _wav(tmp_path, "Actor_01/03-02-03-01-01-01-01.wav")  # song
    _wav(tmp_path, "Actor_01/03-01-09-01-01-01-01.wav")  # no such emotion
    _wav(tmp_path, "Actor_01/notes.wav")
    _corrupt(tmp_path, "Actor_02/03-01-04-01-01-01-02.wav")
    (tmp_path / "Actor_01" / "01-01-05-01-02-01-01.mp4").write_bytes(b"video")
    scan = read_corpus(tmp_path, "ravdess")
    assert _by_name(scan.clips) == {
        "03-01-05-01-02-01-12.wav": ("angry", "ravdess:12", "ravdess:02"),
        "03-01-02-02-01-02-01.wav": ("neutral", "ravdess:01", "ravdess:01"),
    }
    assert scan.dropped == {"surprised": 1}
    problems = _problems(scan)
    assert problems.keys() == {
        "03-02-03-01-01-01-01.wav",
        "03-01-09-01-01-01-01.wav",
        "notes.wav",
        "03-01-04-01-01-01-02.wav",
    }
    assert "song" in problems["03-02-03-01-01-01-01.wav"]
    assert "'09'" in problems["03-01-09-01-01-01-01.wav"]
    assert "unreadable audio" in problems["03-01-04-01-01-01-02.wav"]


def test_cremad(tmp_path: Path) -> None:
    _wav(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav")
    _wav(tmp_path, "AudioWAV/1091_IEO_FEA_HI.wav")
    _wav(tmp_path, "AudioWAV/1002_TIE_NEU_XX.wav")
    _wav(tmp_path, "AudioWAV/1001_DFA_XYZ_XX.wav")
    _wav(tmp_path, "AudioWAV/1001-DFA-ANG-XX.wav")
    scan = read_corpus(tmp_path, "cremad")
    assert _by_name(scan.clips) == {
        "1001_DFA_ANG_XX.wav": ("angry", "cremad:1001", "cremad:DFA"),
        "1091_IEO_FEA_HI.wav": ("fearful", "cremad:1091", "cremad:IEO"),
        "1002_TIE_NEU_XX.wav": ("neutral", "cremad:1002", "cremad:TIE"),
    }
    problems = _problems(scan)
    assert "'XYZ'" in problems["1001_DFA_XYZ_XX.wav"]
    assert "CREMA-D" in problems["1001-DFA-ANG-XX.wav"]


def test_tess_in_emotion_folders(tmp_path: Path) -> None:
    _wav(tmp_path, "OAF_angry/OAF_back_angry.wav")
    _wav(tmp_path, "YAF_fear/YAF_youth_fear.wav")
    _wav(tmp_path, "YAF_disgust/YAF_bath_disgust.wav")
    _wav(tmp_path, "OAF_Pleasant_surprise/OAF_bite_ps.wav")
    _wav(tmp_path, "YAF_sad/YAF_date_bored.wav")
    scan = read_corpus(tmp_path, "tess")
    assert _by_name(scan.clips) == {
        "OAF_back_angry.wav": ("angry", "tess:OAF", "tess:back"),
        "YAF_youth_fear.wav": ("fearful", "tess:YAF", "tess:youth"),
        "YAF_bath_disgust.wav": ("disgust", "tess:YAF", "tess:bath"),
    }
    assert scan.dropped == {"ps": 1}
    assert "'bored'" in _problems(scan)["YAF_date_bored.wav"]


def test_savee_speaker_folders_and_flat_names(tmp_path: Path) -> None:
    _wav(tmp_path, "DC/a01.wav")
    _wav(tmp_path, "JE/sa03.wav")
    _wav(tmp_path, "KL/su01.wav")
    _wav(tmp_path, "flat/JK_f02.wav")
    _wav(tmp_path, "flat/n05.wav")  # no speaker folder
    _wav(tmp_path, "DC/x01.wav")
    scan = read_corpus(tmp_path, "savee")
    assert _by_name(scan.clips) == {
        "a01.wav": ("angry", "savee:DC", "savee:a01"),
        "sa03.wav": ("sad", "savee:JE", "savee:sa03"),
        "JK_f02.wav": ("fearful", "savee:JK", "savee:f02"),
    }
    assert scan.dropped == {"surprised": 1}
    assert _problems(scan).keys() == {"n05.wav", "x01.wav"}


def test_folder_per_label_with_native_names(tmp_path: Path) -> None:
    root = tmp_path / "Emotions"
    _wav(root, "Angry/03-01-05-01-01-01-12.wav")
    _wav(root, "Sad/1001_DFA_SAD_XX.wav")
    _wav(root, "Neutral/03-01-02-01-01-01-03.wav")  # RAVDESS calm filed as neutral: consistent
    _wav(root, "Happy/recording_7.wav")
    _wav(root, "Fearful/DC_f04.wav")
    _wav(root, "Disgusted/OAF_bean_disgust.wav")
    _wav(root, "Angry/1001_DFA_HAP_XX.wav")  # name says happy
    _wav(root, "Suprised/03-01-08-01-01-01-01.wav")
    _wav(root, "Bored/x.wav")
    _wav(root, "loose.wav")
    _corrupt(root, "Sad/broken.wav")
    scan = read_corpus(root, "folders")
    assert _by_name(scan.clips) == {
        "03-01-05-01-01-01-12.wav": ("angry", "ravdess:12", "ravdess:01"),
        "1001_DFA_SAD_XX.wav": ("sad", "cremad:1001", "cremad:DFA"),
        "03-01-02-01-01-01-03.wav": ("neutral", "ravdess:03", "ravdess:01"),
        "recording_7.wav": ("happy", "", ""),
        "DC_f04.wav": ("fearful", "savee:DC", "savee:f04"),
        "OAF_bean_disgust.wav": ("disgust", "tess:OAF", "tess:bean"),
    }
    assert scan.dropped == {"surprised": 1}
    problems = _problems(scan)
    assert problems.keys() == {"1001_DFA_HAP_XX.wav", "x.wav", "loose.wav", "broken.wav"}
    assert "label conflict" in problems["1001_DFA_HAP_XX.wav"]
    assert "unmapped emotion 'bored'" in problems["x.wav"]


def test_folder_layout_uses_the_native_emotion_for_the_mapping(tmp_path: Path) -> None:
    root = tmp_path / "Emotions"
    _wav(root, "Neutral/03-01-02-01-01-01-03.wav")  # RAVDESS calm
    _wav(root, "Neutral/03-01-01-01-01-01-03.wav")  # RAVDESS neutral
    _wav(root, "Suprised/1001_DFA_ANG_XX.wav")  # an angry clip filed as surprised
    _wav(root, "Suprised/unnamed.wav")
    scan = read_corpus(root, "folders", parse_mapping(["calm=drop"]))
    assert [c.path.name for c in scan.clips] == ["03-01-01-01-01-01-03.wav"]
    assert scan.dropped == {"calm": 1, "suprised": 1}
    assert "label conflict" in _problems(scan)["1001_DFA_ANG_XX.wav"]


def test_mapping_overrides(tmp_path: Path) -> None:
    _wav(tmp_path, "Actor_01/03-01-02-01-01-01-01.wav")  # calm
    _wav(tmp_path, "Actor_01/03-01-08-01-01-01-01.wav")  # surprised
    _wav(tmp_path, "Actor_01/03-01-01-01-01-01-01.wav")  # neutral
    mapping = parse_mapping(["calm=drop", "Surprised=surprised"])
    scan = read_corpus(tmp_path, "ravdess", mapping)
    assert sorted(c.label for c in scan.clips) == ["neutral", "surprised"]
    assert scan.dropped == {"calm": 1}
    assert LABEL_MAP["calm"] == "neutral"  # the default is untouched


@pytest.mark.parametrize("bad", ["calm", "=neutral", "calm=", "calm=two words", "calm=../x"])
def test_bad_mapping_is_refused(bad: str) -> None:
    with pytest.raises(CorpusError, match="mapping"):
        parse_mapping([bad])


def test_empty_missing_and_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "nope", "ravdess")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(CorpusError, match="no audio files"):
        read_corpus(tmp_path / "empty", "ravdess")
    with pytest.raises(CorpusError, match="unknown layout 'iemocap'"):
        read_corpus(tmp_path, "iemocap")


def test_dedupe_reports_the_same_file_twice(tmp_path: Path) -> None:
    _wav(tmp_path, "Actor_01/03-01-05-01-01-01-01.wav")
    scan = read_corpus(tmp_path, "ravdess")
    kept, problems = dedupe(scan.clips + scan.clips)
    assert len(kept) == 1
    assert [p.reason for p in problems] == ["listed twice (same file in two corpora)"]
