# A package so these modules (test_config.py, conftest.py, ...) do not clash with same-named files in tests/.
