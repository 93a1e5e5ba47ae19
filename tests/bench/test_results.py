"""Every bench result file says which CPU it ran on: one writer adds the machine description."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from bench import machine, report, tables

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name not in {"report.py", "__init__.py"})
CPU_FIELDS = (
    "cpu",
    "cpu_vendor",
    "cpu_family",
    "cpu_model",
    "cpu_stepping",
    "cpu_kind",
    "cores",
    "online_cores",
    "affinity",
    "flags",
    "isa",
)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def json_writes_outside_report(tree: ast.Module) -> list[str]:
    """Ways a module could write JSON other than ``report.write``; [] when there are none.

    ``json.dumps`` is allowed only as the direct argument of a ``.send(...)`` (a websocket
    message) or of ``print(...)`` (a child process's summary to its parent on stdout);
    ``json.dump`` (to a file) never; a file write naming ``.json`` never.
    """
    sent: set[int] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (
            _dotted(node.func).endswith(".send") or _dotted(node.func) == "print"
        ):
            sent.update(id(arg) for arg in node.args)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in {"json.dump", "dump"}:
            found.append(f"line {node.lineno}: {name}(...)")
        elif name in {"json.dumps", "dumps"} and id(node) not in sent:
            found.append(f"line {node.lineno}: {name}(...) not sent on a websocket or printed")
        elif name.split(".")[-1] in {"write_text", "write_bytes", "open"}:
            text = ast.unparse(node)
            if ".json" in text or "json" in text.split("(", 1)[-1]:
                found.append(f"line {node.lineno}: {text}")
    return found


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_bench_modules_write_json_only_through_report(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert json_writes_outside_report(tree) == []
    calls = {_dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    if "report.arguments" in calls:  # a bench script: its result goes through report.write
        assert "report.write" in calls, f"{path.name} parses bench arguments but never writes"


def test_the_check_catches_other_writers() -> None:
    bad = ast.parse(
        "import json\n"
        "json.dump({}, open('x', 'w'))\n"
        "Path('r.json').write_text(json.dumps({}))\n"
        "ws.send(json.dumps({'type': 'end'}))\n"
    )
    found = json_writes_outside_report(bad)
    assert len(found) == 3, found  # the dump, the dumps written to a file, its write_text
    assert json_writes_outside_report(ast.parse("ws.send(json.dumps({}))")) == []
    assert json_writes_outside_report(ast.parse("print(json.dumps({}))")) == []
    assert len(json_writes_outside_report(ast.parse("print('x', file=open('r.json', 'w'))"))) == 1


def test_every_result_records_the_cpu(tmp_path: Path) -> None:
    path = report.write(tmp_path, "probe", {"rows": [1]}, quick=True)
    data = json.loads(path.read_text())
    assert data["benchmark"] == "probe" and data["rows"] == [1]
    m = data["machine"]
    for key in CPU_FIELDS:
        assert key in m, key
    assert m["cpu_kind"].startswith(("AMD family", "Intel family"))
    assert m["affinity"] and set(m["affinity"]) <= set(range(4096))
    assert set(m["isa"]) >= {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16"}
    assert set(m["isa"]) >= {"amx_tile", "amx_int8", "amx_bf16"}
    assert sorted(f for f, on in m["isa"].items() if on) == m["flags"]
    assert m["cpu_kind"] in tables.machine(data)


def test_a_script_cannot_override_the_description(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="machine"):
        report.write(tmp_path, "probe", {"machine": {}}, quick=True)
    assert not (tmp_path / "probe.json").exists()


def test_kind_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
        "model name\t: AMD EPYC 7713 64-Core Processor\nstepping\t: 1\ncpu MHz\t\t: 2000.0\n"
        "flags\t\t: fpu sse2 avx fma avx2\n"
    )
    monkeypatch.setattr(machine, "CPUINFO", cpuinfo)
    m = machine.describe()
    assert (m["cpu_vendor"], m["cpu_family"], m["cpu_model"], m["cpu_stepping"]) == (
        "AuthenticAMD",
        "25",
        1,
        1,
    )
    assert m["cpu_kind"] == "AMD family 25 model 1, AVX2"
    assert m["flags"] == ["avx2", "fma"]
    assert machine.cpu_kind("GenuineIntel", 6, 143, {"avx512f", "avx512_vnni", "amx_tile"}) == (
        "Intel family 6 model 143, AVX-512 + VNNI + AMX"
    )
