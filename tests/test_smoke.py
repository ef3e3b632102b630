import seawall


def test_version_is_a_string() -> None:
    assert seawall.__version__.count(".") >= 2
