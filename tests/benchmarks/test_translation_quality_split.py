"""benchmarks/translation_quality.py without a model: the development/scored split fixed in code,
merging cells into the results file, and resuming from the hypotheses kept in the work folder."""

from __future__ import annotations

import json

import pytest

from benchmarks import translation_quality as tq


def test_parts_are_fixed_disjoint_and_cover_the_file():
    development = tq.part_indices(500, "development")
    scored = tq.part_indices(500, "scored")
    assert development[:3] == [0, 2, 4] and scored[:3] == [1, 3, 5]
    assert len(development) == len(scored) == 250
    assert not set(development) & set(scored)
    assert sorted(development + scored) == tq.part_indices(500, "all") == list(range(500))


def test_limit_takes_the_first_lines_of_the_part_only():
    assert tq.part_indices(500, "scored", 3) == [1, 3, 5]
    assert tq.part_indices(500, "development", 3) == [0, 2, 4]
    assert tq.part_indices(500, "all", 3) == [0, 1, 2]
    assert tq.cell_key("news", "eng-fra", "none", "scored", 3) == "news/eng-fra/none/scored/first-3"
    assert tq.cell_key("news", "eng-fra", "none", "scored") == "news/eng-fra/none/scored"
    with pytest.raises(ValueError):
        tq.part_indices(10, "train")


def test_directions_read_the_same_file_either_way():
    pairs = [("Hello.", "Bonjour."), ("Thanks.", "Merci.")]
    assert tq.oriented(pairs, "eng-fra") == pairs
    assert tq.oriented(pairs, "fra-eng") == [("Bonjour.", "Hello."), ("Merci.", "Thanks.")]
    assert tq.other_language("fra-eng") == tq.other_language("eng-fra") == "fra"


def test_memory_drops_pairs_equal_to_a_test_line_on_either_side():
    test = [("I am tired.", "Je suis fatigué.")]
    parallel = [("I am TIRED", "J'ai sommeil."), ("Go.", "Je suis fatigué !"), ("Run.", "Cours !")]
    kept, dropped = tq.memory_pairs(parallel, test)
    assert kept == [("Run.", "Cours !")] and dropped == 2


def _cell(chrf: float) -> dict:
    return {"chrf": chrf, "lines": 250, "seconds": 10.0, "seconds_per_line": 0.04}


def test_cells_merge_and_are_replaced_only_when_asked(tmp_path):
    path = tmp_path / "results.json"
    tq.store_cell(path, "news/eng-fra/none/scored", _cell(40.0))
    tq.store_cell(path, "news/fra-eng/none/scored", _cell(50.0))
    cells = json.loads(path.read_text())["cells"]
    assert set(cells) == {"news/eng-fra/none/scored", "news/fra-eng/none/scored"}

    with pytest.raises(tq.CellExists):
        tq.store_cell(path, "news/eng-fra/none/scored", _cell(41.0))
    assert json.loads(path.read_text())["cells"]["news/eng-fra/none/scored"]["chrf"] == 40.0

    tq.store_cell(path, "news/eng-fra/none/scored", _cell(41.0), replace=True)
    tq.store_cell(path, "news/eng-fra/none/scored", _cell(42.0), replace=True)
    data = json.loads(path.read_text())
    cell = data["cells"]["news/eng-fra/none/scored"]
    assert cell["chrf"] == 42.0
    assert [old["chrf"] for old in cell["replaces"]] == [40.0, 41.0]  # the file keeps every run of the cell
    assert data["cells"]["news/fra-eng/none/scored"]["chrf"] == 50.0
    assert data["targets"]["chrf_news_eng_fra_none_all"] == tq.TARGETS["eng-fra"]


def test_a_cell_written_by_another_run_meanwhile_is_kept(tmp_path):
    path = tmp_path / "results.json"
    tq.store_cell(path, "tatoeba/eng-deu/memory/development", _cell(45.0))
    other = json.loads(path.read_text())
    other["cells"]["news/deu-eng/none/development"] = _cell(30.0)
    path.write_text(json.dumps(other))
    tq.store_cell(path, "tatoeba/eng-deu/none/development", _cell(40.0))
    assert set(json.loads(path.read_text())["cells"]) == {
        "tatoeba/eng-deu/memory/development", "tatoeba/eng-deu/none/development", "news/deu-eng/none/development"}


def test_met_waits_for_every_full_target_cell():
    cells = {tq.cell_key("news", d, "none", "all"): {**_cell(t), "lines": 500} for d, t in tq.TARGETS.items()}
    assert tq.figures_and_met(cells)[2] is True
    cells[tq.cell_key("news", "eng-deu", "none", "all")]["chrf"] = tq.TARGETS["eng-deu"] - 0.01
    assert tq.figures_and_met(cells)[2] is False
    del cells[tq.cell_key("news", "eng-deu", "none", "all")]
    assert tq.figures_and_met(cells)[2] is None
    figures = tq.figures_and_met({"news/eng-fra/memory/scored/first-3": _cell(12.5)})[0]
    assert figures == {"chrf_news_eng_fra_memory_scored_first_3": 12.5}


def test_table_puts_the_conditions_side_by_side_with_the_news_target():
    cells = {"news/eng-fra/none/all": {**_cell(48.0), "lines": 500},
             "news/eng-fra/memory/all": {**_cell(49.5), "lines": 500},
             "tatoeba/eng-fra/none/all": {**_cell(44.0), "lines": 500}}
    rows = tq.table(cells).splitlines()
    assert len(rows) == 3
    news = next(r for r in rows if "news" in r)
    assert "48.00" in news and "49.50" in news and "1.50" in news and "50.00" in news
    tatoeba = next(r for r in rows if "tatoeba" in r)
    assert "44.00" in tatoeba and " - " in tatoeba and "50.00" not in tatoeba


class _FakeTranslator:
    """Upper-cases each line, counting the lines it was asked for."""

    def __init__(self, calls: list):
        self.calls = calls

    def translate(self, text, target, source):
        self.calls.extend(text.split("\n"))

        class Result:
            pass

        result = Result()
        result.text = text.upper()
        result.metrics = {}
        return result


def test_a_stopped_cell_resumes_from_the_work_folder_without_redoing_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(tq, "CHUNK", 2)
    pairs = [(f"line {i}", f"LINE {i}") for i in range(10)]
    indices = tq.part_indices(len(pairs), "scored")  # 1, 3, 5, 7, 9
    calls: list = []
    cache = tq.HypothesisCache(tmp_path, "news-eng-fra-none", "fp1")
    cache.add([{"i": 1, "src": "line 1", "hyp": "LINE 1", "s": 0.5},
               {"i": 3, "src": "line 3", "hyp": "LINE 3", "s": 0.5}])
    with open(cache.path, "a", encoding="utf-8") as handle:
        handle.write('{"i": 5, "src": "line 5", "hy')  # a run killed while writing

    resumed = tq.HypothesisCache(tmp_path, "news-eng-fra-none", "fp1")
    figures = tq.run_cell(lambda: _FakeTranslator(calls), resumed, pairs, indices, "eng-fra")
    assert calls == ["line 5", "line 7", "line 9"]
    assert figures["lines"] == 5 and figures["lines_from_cache"] == 2 and figures["chrf"] == 100.0

    # --part all afterwards translates only the development lines.
    calls.clear()
    again = tq.HypothesisCache(tmp_path, "news-eng-fra-none", "fp1")
    tq.run_cell(lambda: _FakeTranslator(calls), again, pairs, tq.part_indices(10, "all"), "eng-fra")
    assert calls == ["line 0", "line 2", "line 4", "line 6", "line 8"]


def test_another_fingerprint_or_source_line_is_translated_again(tmp_path):
    cache = tq.HypothesisCache(tmp_path, "c", "fp1")
    cache.add([{"i": 0, "src": "a", "hyp": "A", "s": 1.0}])
    assert tq.HypothesisCache(tmp_path, "c", "fp1").get(0, "a") is not None
    assert tq.HypothesisCache(tmp_path, "c", "fp1").get(0, "changed") is None
    assert tq.HypothesisCache(tmp_path, "c", "fp2").get(0, "a") is None
    assert (tmp_path / "c.jsonl.old").is_file()
    assert tq.HypothesisCache(None, "c", "fp1").get(0, "a") is None  # without --work nothing is kept
