def test_tiny(tiny_run):
    import json
    m = json.loads((tiny_run / "metrics.json").read_text())
    print(sorted(m["models"]), m["timings"], m["split"])
    print(sorted(p.name for p in tiny_run.rglob("*")))
