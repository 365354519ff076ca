"""Download code against a loopback HTTP server (these machines cannot reach the internet)."""

import dataclasses
import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch

from inception_deploy import create_model
from inception_deploy.checkpoints import zoo
from inception_deploy.checkpoints.weights import download, expected_digest
from inception_deploy.errors import WeightsError
from inception_deploy.models import PretrainedWeights, get_arch


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Serves a folder on 127.0.0.1 and counts the requests it answered."""
    root = tmp_path_factory.mktemp("served")
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_port}", hits
    httpd.shutdown()


def _publish(root, stem, payload, prefix_len=8, tamper=False):
    digest = hashlib.sha256(payload).hexdigest()
    name = f"{stem}-{digest[:prefix_len]}.pth"
    (root / name).write_bytes(payload + (b"x" if tamper else b""))
    return name, digest


def test_expected_digest_from_torch_hub_style_name():
    assert expected_digest(PretrainedWeights("https://h/models/googlenet-1378be20.pth")) == "1378be20"
    assert expected_digest(PretrainedWeights("https://h/a/20180402-114759-vggface2.pt")) is None
    assert expected_digest(PretrainedWeights("https://h/x.pth", sha256="AB" * 32)) == "ab" * 32


def test_download_checks_hash_and_caches(server, tmp_path):
    root, base, hits = server
    name, _ = _publish(root, "ok", b"checkpoint bytes " * 1000)
    source = PretrainedWeights(f"{base}/{name}")
    path = download(source, directory=tmp_path, progress=False)
    assert path == tmp_path / name and path.read_bytes() == (root / name).read_bytes()
    before = len(hits)
    assert download(source, directory=tmp_path, progress=False) == path
    assert len(hits) == before  # second call served from the cache
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_full_sha256_is_checked(server, tmp_path):
    root, base, _ = server
    (root / "plain.pth").write_bytes(b"abc")
    good = PretrainedWeights(f"{base}/plain.pth", sha256=hashlib.sha256(b"abc").hexdigest())
    assert download(good, directory=tmp_path, progress=False).read_bytes() == b"abc"
    bad = PretrainedWeights(f"{base}/plain.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="does not match"):
        download(bad, directory=tmp_path / "other", progress=False)


def test_corrupt_download_leaves_nothing_behind(server, tmp_path):
    root, base, _ = server
    name, digest = _publish(root, "tampered", b"real weights", tamper=True)
    with pytest.raises(WeightsError, match=f"{name}: sha256 .* does not match the published {digest[:8]}"):
        download(PretrainedWeights(f"{base}/{name}"), directory=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stale_cache_is_replaced(server, tmp_path):
    root, base, _ = server
    name, _ = _publish(root, "fresh", b"fresh weights")
    (tmp_path / name).write_bytes(b"half a download")
    path = download(PretrainedWeights(f"{base}/{name}"), directory=tmp_path, progress=False)
    assert path.read_bytes() == b"fresh weights"


def test_unpublished_hash_is_reported(server, tmp_path, caplog):
    root, base, _ = server
    (root / "nohash.pt").write_bytes(b"xyz")
    download(PretrainedWeights(f"{base}/nohash.pt"), directory=tmp_path, progress=False)
    assert f"sha256 of the download is {hashlib.sha256(b'xyz').hexdigest()}" in caplog.text


def test_offline_names_url_and_suggests_local_file(tmp_path):
    url = "http://127.0.0.1:9/googlenet-1378be20.pth"  # discard port: nothing listens
    with pytest.raises(WeightsError, match=f"could not download {url} .*pass the local file"):
        download(PretrainedWeights(url), directory=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_on_server(server, tmp_path):
    _, base, _ = server
    with pytest.raises(WeightsError, match="could not download .*absent-12345678.pth"):
        download(PretrainedWeights(f"{base}/absent-12345678.pth"), directory=tmp_path, progress=False)


def test_create_model_pretrained_downloads_into_cache(server, tmp_path, monkeypatch, built_models):
    root, base, _ = server
    reference = built_models("v1")
    buffer = tmp_path / "src.pth"
    torch.save(reference.state_dict(), buffer)
    name, _ = _publish(root, "googlenet", buffer.read_bytes())
    spec = dataclasses.replace(get_arch("v1"), pretrained=PretrainedWeights(f"{base}/{name}"))
    monkeypatch.setattr(zoo, "get_arch", lambda arch: spec)
    monkeypatch.setenv("INCEPTION_DEPLOY_CACHE", str(tmp_path / "cache"))
    model = create_model("v1", weights="pretrained")
    assert (tmp_path / "cache" / name).is_file()
    assert torch.equal(model.fc.weight, reference.fc.weight)
