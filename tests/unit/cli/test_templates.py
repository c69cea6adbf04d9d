import pytest

from berth.cli.templates import render
from berth.errors import InvalidParameter


def test_render_fields_json_and_escapes():
    data = {"Server": {"Version": "0.1.0", "Labels": ["a", "b"]}, "On": True}
    assert render("{{.Server.Version}}\\t{{.On}}", data) == "0.1.0\ttrue"
    assert render("{{json .Server.Labels}}", data) == '["a","b"]'
    assert render('{{join .Server.Labels ","}}', data) == "a,b"
    assert render("{{ upper .Server.Version }}", data) == "0.1.0"
    with pytest.raises(InvalidParameter):
        render("{{.Server.Nope}}", data)
