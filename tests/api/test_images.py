"""Images on a real berthd through docker-py and raw HTTP: formats, refusals, sharing, rules."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time

import docker
import pytest

from tests.lib import rawhttp
from tests.lib.images import config_for, docker_archive, layer_tar, oci_archive, sha


def client(d) -> docker.APIClient:  # type: ignore[no-untyped-def]
    c = docker.APIClient(base_url=d.url, version="1.47")
    c.trust_env = False
    return c


def load(d, data: bytes, quiet: bool = True) -> rawhttp.RawResponse:  # type: ignore[no-untyped-def]
    return rawhttp.request(d.sock, "POST", f"/images/load?quiet={int(quiet)}", body=data,
                           headers={"Content-Type": "application/x-tar"}, timeout=60)


def image_dir(d) -> str:  # type: ignore[no-untyped-def]
    return os.path.join(d.root, "data", "image")


def assert_nothing_left(d) -> None:  # type: ignore[no-untyped-def]
    assert os.listdir(os.path.join(image_dir(d), "tmp")) == []
    assert os.listdir(os.path.join(image_dir(d), "layers")) == []
    assert client(d).images() == []
    assert rawhttp.request(d.sock, "GET", "/_ping").status == 200


L1 = layer_tar({"bin/a": b"a" * 3000, "etc/x": b"x"})
L2 = layer_tar({"etc/y": b"y" * 100})


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none"])
def test_oci_layout_with_compressed_layers(berthd, compress):
    cfg = config_for([L1, L2])
    r = load(berthd, oci_archive(cfg, [L1, L2], "docker.io/library/oci:one", compress))
    assert r.status == 200, r.body
    assert b"Loaded image: oci:one" in r.body
    assert client(berthd).inspect_image("oci:one")["Id"] == sha(cfg)


def test_non_quiet_load_streams_progress(berthd):
    big = layer_tar({"big": os.urandom(3 << 20)})
    r = load(berthd, docker_archive([(config_for([big]), [big], ["prog:1"])]), quiet=False)
    lines = [json.loads(line) for line in r.body.splitlines()]
    assert any(m.get("status") == "Loading layer" for m in lines)
    assert lines[-1] == {"stream": "Loaded image: prog:1\n"}


def test_untagged_load_reports_the_id(berthd):
    cfg = config_for([L1])
    r = load(berthd, docker_archive([(cfg, [L1], [])]))
    assert r.status == 200 and f"Loaded image ID: {sha(cfg)}".encode() in r.body


def bad_layer(entries: list[tuple[str, str, str]]) -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, value
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "file":
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value.encode()))
                continue
            tf.addfile(info)
    return buf.getvalue()


def _bad_archives() -> list[tuple[str, bytes, str]]:
    good = docker_archive([(config_for([L1]), [L1], ["bad:x"])])
    cases = [
        ("truncated archive", good[: len(good) // 2], "truncated"),
        ("not a tar", b"hello world" * 100, "invalid archive"),
        ("no manifest", docker_archive([(config_for([L1]), [L1], ["bad:x"])], tamper={"manifest.json": None}),
         "neither manifest.json"),
        ("manifest names a missing file", docker_archive([(config_for([L1]), [L1], ["bad:x"])],
                                                         tamper={sha(L1)[7:] + "/layer.tar": None}), "not in the archive"),
        ("digest mismatch", docker_archive([(config_for([L2]), [L1], ["bad:x"])]), "but the image config expects"),
        ("huge manifest.json", docker_archive([(config_for([L1]), [L1], ["bad:x"])],
                                              tamper={"manifest.json": b"[" + b" " * (9 << 20) + b"]"}), "too large"),
        ("manifest not JSON", docker_archive([(config_for([L1]), [L1], ["bad:x"])], tamper={"manifest.json": b"{"}),
         "not valid JSON"),
        ("bad tag", docker_archive([(config_for([L1]), [L1], ["UPPER:case"])]), "invalid reference format"),
    ]
    for label, layer, msg in [
        ("absolute path", bad_layer([("/etc/passwd", "file", "x")]), "absolute path"),
        ("dot-dot", bad_layer([("a/../../x", "file", "x")]), "'..' component"),
        ("symlink outside", bad_layer([("l", "sym", "../../../etc/shadow")]), "outside the layer"),
        ("write through symlink", bad_layer([("l", "sym", "/etc"), ("l/passwd", "file", "x")]), "not a directory"),
        ("device node", bad_layer([("dev/mem", "chr", "")]), "device node"),
        ("corrupt layer", b"\x01" * 2048, "checksum"),
    ]:
        cases.append((label, docker_archive([(config_for([layer]), [layer], ["bad:x"])]), msg))
    return cases


@pytest.mark.parametrize("label, data, message", _bad_archives(), ids=[c[0] for c in _bad_archives()])
def test_bad_archives_are_refused_and_leave_nothing(berthd, label, data, message):
    r = load(berthd, data)
    assert r.status == 400, (label, r.status, r.body)
    assert message in r.json()["message"], (label, r.json())
    assert_nothing_left(berthd)


def test_oci_blob_digest_mismatch(berthd):
    cfg = config_for([L1])
    archive = oci_archive(cfg, [L1], "docker.io/library/x:y", "none")
    good_name = f"blobs/sha256/{sha(L1)[7:]}".encode()
    # swap the layer blob's content for another layer under the same name
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            data = src.extractfile(m).read()
            if m.name.encode() == good_name:
                data = L2
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    r = load(berthd, out.getvalue())
    assert r.status == 400 and "but the manifest says" in r.json()["message"]
    assert_nothing_left(berthd)


def test_shared_layer_deleted_with_the_last_image(berthd):
    c = client(berthd)
    base = layer_tar({"shared": b"s" * 5000})
    top = layer_tar({"top": b"t"})
    r = load(berthd, docker_archive([(config_for([base]), [base], ["one:1"]),
                                     (config_for([base, top]), [base, top], ["two:1"])]))
    assert r.status == 200, r.body
    layers_dir = os.path.join(image_dir(berthd), "layers")
    assert len(os.listdir(layers_dir)) == 2
    c.remove_image("two:1")
    assert len(os.listdir(layers_dir)) == 1  # the top layer went, the shared one stays for one:1
    c.remove_image("one:1")
    assert os.listdir(layers_dir) == []


def test_tag_and_rmi_rules(berthd):
    c = client(berthd)
    cfg = config_for([L1])
    load(berthd, docker_archive([(cfg, [L1], ["rules:a"])]))
    c.tag("rules:a", "rules", "b")
    c.tag("rules:a", "other.example:5000/team/rules", "c")
    assert sorted(c.inspect_image(sha(cfg))["RepoTags"]) == ["other.example:5000/team/rules:c", "rules:a", "rules:b"]
    assert c.remove_image("rules:b") == [{"Untagged": "rules:b"}]
    with pytest.raises(docker.errors.APIError) as e:
        c.remove_image(sha(cfg)[7:19])
    assert e.value.status_code == 409 and "must be forced" in str(e.value)
    with pytest.raises(docker.errors.ImageNotFound):
        c.inspect_image("nosuch:image")
    out = c.remove_image(sha(cfg)[7:19], force=True)
    assert {"Deleted": sha(cfg)} in out and {"Untagged": "rules:a"} in out
    r = rawhttp.request(berthd.sock, "DELETE", "/images/nosuch")
    assert r.status == 404 and r.json()["message"] == "No such image: nosuch"


def test_ambiguous_prefix(berthd):
    c = client(berthd)
    # find two configs whose IDs share a first hex digit
    seen: dict[str, bytes] = {}
    i = 0
    while True:
        cfg = config_for([L1], author=str(i))
        i += 1
        if sha(cfg)[7] in seen:
            break
        seen[sha(cfg)[7]] = cfg
    other = seen[sha(cfg)[7]]
    load(berthd, docker_archive([(cfg, [L1], []), (other, [L1], [])]))
    r = rawhttp.request(berthd.sock, "GET", f"/images/{sha(cfg)[7]}/json")
    assert r.status == 400 and "multiple IDs found with provided prefix" in r.json()["message"]
    assert c.inspect_image(sha(cfg)[7:20])["Id"] == sha(cfg)


def test_list_filters(berthd):
    c = client(berthd)
    a = config_for([L1], labels={"team": "blue"}, author="a")
    b = config_for([L2], labels={"team": "red"}, author="b")
    dangling = config_for([L1], author="dangling")
    load(berthd, docker_archive([(a, [L1], ["alpha:1"])]))
    time.sleep(0.01)  # not a wait: the two loads get different times (the since/before filters)
    load(berthd, docker_archive([(b, [L2], ["beta/x:2"]), (dangling, [L1], [])]))

    def ids(**filters) -> set[str]:  # type: ignore[no-untyped-def]
        return {i["Id"] for i in c.images(filters=filters)}

    assert ids() == {sha(a), sha(b), sha(dangling)}
    assert ids(dangling=True) == {sha(dangling)}
    assert ids(dangling=False) == {sha(a), sha(b)}
    assert ids(reference="alpha") == {sha(a)}
    assert ids(reference="beta/*:2") == {sha(b)}
    assert ids(label="team=red") == {sha(b)}
    assert ids(label="team") == {sha(a), sha(b)}
    assert ids(since="alpha:1") == {sha(b), sha(dangling)}
    assert ids(before="beta/x:2") == {sha(a)}
    r = rawhttp.request(berthd.sock, "GET", "/images/json?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D")
    assert r.status == 400 and "invalid filter 'nope'" in r.json()["message"]
    pruned = c.prune_images()
    assert [x for x in pruned["ImagesDeleted"] if "Deleted" in x][0] == {"Deleted": sha(dangling)}
    assert ids() == {sha(a), sha(b)}
    assert c.df()["LayersSize"] > 0 and len(c.df()["Images"]) == 2


def test_image_events(berthd):
    c = client(berthd)
    t0 = time.time()
    load(berthd, docker_archive([(config_for([L1]), [L1], ["ev:1"])]))
    c.tag("ev:1", "ev", "2")
    c.remove_image("ev:2")
    c.remove_image("ev:1")
    events = list(c.events(since=t0, until=time.time() + 0.5, decode=True, filters={"type": ["image"]}))
    assert [e["Action"] for e in events] == ["load", "tag", "untag", "untag", "delete"]


def test_import_with_changes_and_bad_change(berthd):
    c = client(berthd)
    rootfs = layer_tar({"bin/tool": b"#!/bin/sh\n"})
    r = rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=imp&tag=t&message=hello"
                        "&changes=ENV%20A%3D1%20B%3D2&changes=EXPOSE%2080%2053%2Fudp&changes=WORKDIR%20%2Fsrv"
                        "&changes=LABEL%20x%3Dy&changes=ENTRYPOINT%20%5B%22%2Fbin%2Ftool%22%5D", body=rootfs)
    assert r.status == 200, r.body
    image_id = json.loads(r.body)["status"]
    cfg = c.inspect_image("imp:t")
    assert cfg["Id"] == image_id and cfg["Comment"] == "hello"
    assert cfg["Config"]["Env"] == ["A=1", "B=2"] and cfg["Config"]["WorkingDir"] == "/srv"
    assert cfg["Config"]["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Config"]["Entrypoint"] == ["/bin/tool"] and cfg["Config"]["Labels"] == {"x": "y"}
    r = rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=imp&tag=bad&changes=RUN%20ls",
                        body=rootfs)
    assert r.status == 400 and "RUN is not a valid change command" in r.json()["message"]
    r = rawhttp.request(berthd.sock, "POST", "/images/create?fromImage=busybox&tag=latest")  # Hub: refused here
    assert r.status == 503 and "registry-1.docker.io" in r.json()["message"], r.body
    assert [i["RepoTags"] for i in c.images()] == [["imp:t"]]


def test_save_unknown_name_is_404_before_any_byte(berthd):
    r = rawhttp.request(berthd.sock, "GET", "/images/get?names=nosuch")
    assert r.status == 404 and r.json()["message"] == "No such image: nosuch"


def test_docker_py_high_level_roundtrip(berthd):
    hc = docker.DockerClient(base_url=berthd.url, version="1.47")
    cfg = config_for([L1, L2])
    (img,) = hc.images.load(docker_archive([(cfg, [L1, L2], ["hl:1"])]))
    assert img.id == sha(cfg) and img.tags == ["hl:1"]
    data = b"".join(hc.images.get("hl:1").save(named=True))
    hc.images.remove("hl:1")
    (again,) = hc.images.load(data)
    assert again.id == sha(cfg)
    assert [h["CreatedBy"] for h in again.history()] == ["layer 1", "layer 0"]


def test_kill_during_load_leaves_nothing_half_registered(make_berthd):
    d = make_berthd().start()
    big = layer_tar({"big": os.urandom(8 << 20)})
    archive = docker_archive([(config_for([big]), [big], ["half:1"])])
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.sendall(f"POST /images/load?quiet=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(archive)}\r\n\r\n".encode())
    s.sendall(archive[: len(archive) // 2])
    staging = os.path.join(image_dir(d), "tmp")
    deadline = time.time() + 10
    while not os.listdir(staging) and time.time() < deadline:  # extraction under way
        time.sleep(0.01)
    assert os.listdir(staging)
    d.signal(signal.SIGKILL)
    d.proc.wait()
    s.close()
    d.start()  # a stale socket from the killed daemon is replaced
    assert "left over from an interrupted operation" in d.log()
    assert_nothing_left(d)
    r = load(d, archive)  # and the same load now succeeds
    assert r.status == 200 and b"Loaded image: half:1" in r.body


def test_disk_full_during_load_is_a_clean_error(make_berthd, cleanup):
    """A 4 MiB tmpfs as the data root: an 8 MiB image cannot fit."""
    import subprocess

    d = make_berthd()
    data = os.path.join(d.root, "data")
    os.makedirs(data)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "berth-test-full", data], check=True)
    cleanup.add(f"tmpfs {data}", lambda: subprocess.run(["umount", "-l", data], check=False))
    d.start()
    big = layer_tar({"big": os.urandom(8 << 20)})
    r = load(d, docker_archive([(config_for([big]), [big], ["full:1"])]))
    assert r.status == 500 and "no space left" in r.json()["message"]
    assert_nothing_left(d)
    small = layer_tar({"s": b"fits"})
    assert load(d, docker_archive([(config_for([small]), [small], ["small:1"])])).status == 200
    d.stop()


def test_gzipped_archive_loads(berthd):
    import gzip

    cfg = config_for([L1])
    r = load(berthd, gzip.compress(docker_archive([(cfg, [L1], ["gz:1"])])))
    assert r.status == 200 and b"Loaded image: gz:1" in r.body
