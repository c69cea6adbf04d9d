import pytest

from berth import errors
from berth.api import versions
from berth.api.errors import status_for
from berth.api.http import Request, Response
from berth.api.router import Router, route
from berth.security.identity import ANONYMOUS


@pytest.mark.parametrize("path, version, rest", [
    ("/v1.47/info", "1.47", "/info"),
    ("/v1.24/containers/json", "1.24", "/containers/json"),
    ("/info", None, "/info"),
    ("/v1/x", "1", "/x"),
    ("/version", None, "/version"),
    ("/volumes/v1.2", None, "/volumes/v1.2"),
])
def test_split_version(path, version, rest):
    assert versions.split_version(path) == (version, rest)


def test_version_bounds_use_dockerd_wording():
    versions.check_version("1.47")
    versions.check_version("1.24")
    with pytest.raises(errors.InvalidParameter, match=r"^client version 1.48 is too new. Maximum supported API "
                                                      r"version is 1.47$"):
        versions.check_version("1.48")
    with pytest.raises(errors.InvalidParameter, match=r"^client version 1.23 is too old. Minimum supported API "
                                                      r"version is 1.24, please upgrade"):
        versions.check_version("1.23")
    # 1.100 is newer than 1.47 although "1.100" < "1.47" as text
    with pytest.raises(errors.InvalidParameter, match="too new"):
        versions.check_version("1.100")


@pytest.mark.parametrize("kind, status", [
    (errors.InvalidParameter, 400), (errors.Unauthorized, 401), (errors.Forbidden, 403), (errors.NotFound, 404),
    (errors.Conflict, 409), (errors.NotModified, 304), (errors.NotSupported, 501), (errors.Unavailable, 503),
    (errors.System, 500),
])
def test_each_kind_has_one_status(kind, status):
    assert status_for(kind("x")) == status


def test_unclassified_is_500():
    assert status_for(ValueError("bug")) == 500


def _h(req: Request) -> Response:
    return Response.text(req.params.get("name", ""))


def test_router_static_dynamic_and_path_params():
    r = Router([route("GET", "/_ping", _h, action="test.route"), route("GET", "/images/{name:path}/json", _h, action="test.route"),
                route("POST", "/containers/{id}/start", _h, action="test.route")])
    assert r.match("GET", "/_ping")[1] == {}
    assert r.match("HEAD", "/_ping") is not None  # every GET also answers HEAD
    assert r.match("GET", "/images/host:5000/a/b:t/json")[1] == {"name": "host:5000/a/b:t"}
    assert r.match("POST", "/containers/abc/start")[1] == {"id": "abc"}
    assert r.match("POST", "/containers/a/b/start") is None  # {id} does not cross a slash
    assert r.match("GET", "/containers/abc/start") is None
    assert r.match("GET", "/nope") is None


def test_request_query_helpers():
    req = Request("GET", "/x", "a=1&b=false&c=&d=yes&n=12&f=%7B%22k%22%3A1%7D", {}, "1.47", ANONYMOUS)
    assert req.arg("a") == "1" and req.bool_arg("a")
    assert not req.bool_arg("b") and not req.bool_arg("c") and req.bool_arg("d")
    assert req.bool_arg("missing", default=True)
    assert req.int_arg("n") == 12 and req.int_arg("missing") is None
    assert req.json_arg("f") == {"k": 1}
    with pytest.raises(errors.InvalidParameter):
        req.int_arg("a") and req.int_arg("d")
