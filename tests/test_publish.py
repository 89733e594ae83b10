"""mcjepa-publish with huggingface_hub's HTTP layer mocked at the transport (httpx MockTransport,
installed with ``huggingface_hub.set_client_factory``): what would be sent, what the manifest records,
and loading the published entry back through a local HF cache, offline."""

import base64
import json
import shutil

import httpx2
import huggingface_hub
import pytest
import torch
from huggingface_hub.utils._http import default_client_factory
from test_export import seeded_training_model, write_run

from mcjepa.cli.publish import main as publish_main
from mcjepa.release import load_manifest, load_model
from mcjepa.release.export import export_release
from mcjepa.release.publish import PublishError, publish_release

REPO = "my-org/mcjepa-micro"
SHA = "fedcba9876543210fedcba9876543210fedcba98"


class FakeHub:
    """Answers the Hub endpoints a folder upload uses; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.created: dict | None = None
        self.branches: list[str] = []
        self.commits: list[dict] = []
        self.sha = SHA

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        assert request.headers.get("authorization") == "Bearer hf_fake_token"
        if request.method == "POST" and path == "/api/repos/create":
            self.created = json.loads(request.content)
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{REPO}"})
        if request.method == "POST" and path.startswith(f"/api/models/{REPO}/branch/"):
            self.branches.append(path.rsplit("/", 1)[1])
            return httpx2.Response(200, json={})
        if request.method == "POST" and path == "/api/validate-yaml":
            return httpx2.Response(200, json={})
        if request.method == "POST" and path.startswith(f"/api/models/{REPO}/preupload/"):
            files = json.loads(request.content)["files"]
            out = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": out})
        if request.method == "POST" and path.startswith(f"/api/models/{REPO}/commit/"):
            lines = [json.loads(line) for line in request.content.decode().splitlines() if line]
            files = {
                item["value"]["path"]: base64.b64decode(item["value"]["content"])
                for item in lines
                if item["key"] == "file"
            }
            header = next(item["value"] for item in lines if item["key"] == "header")
            self.commits.append({"revision": path.rsplit("/", 1)[1], "files": files, "header": header})
            return httpx2.Response(
                200, json={"commitUrl": f"https://huggingface.co/{REPO}/commit/{self.sha}", "commitOid": self.sha}
            )
        return httpx2.Response(404, json={"error": f"unexpected {request.method} {path}"})


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake)))
    yield fake
    huggingface_hub.set_client_factory(default_client_factory)


@pytest.fixture(scope="module")
def trained():
    return seeded_training_model(99)


@pytest.fixture
def release(trained, tmp_path):
    run = write_run(tmp_path / "run", trained, steps=(3,))
    manifest = tmp_path / "weights_manifest.json"
    manifest.write_text(json.dumps({"format_version": 1, "note": "t", "models": {"keep": {"status": "local"}}}))
    export_release(run, tmp_path / "release", name="micro-pub", manifest=manifest)
    return tmp_path / "release", manifest


def test_publish_sends_the_folder_and_pins_the_commit(hub, release, trained, tmp_path, monkeypatch, capsys):
    folder, manifest = release
    rc = publish_main([str(folder), "--repo-id", REPO, "--revision", "v1", "--private", "--manifest", str(manifest)])
    assert rc == 0, capsys.readouterr().err
    # what was sent: the repo, the branch, one commit with exactly the folder's files, byte for byte
    assert hub.created["name"] == "mcjepa-micro" and hub.created["organization"] == "my-org"
    assert hub.created["visibility"] == "private"
    assert hub.branches == ["v1"]
    assert len(hub.commits) == 1 and hub.commits[0]["revision"] == "v1"
    sent = hub.commits[0]["files"]
    assert sorted(sent) == sorted(p.name for p in folder.iterdir())
    assert all(sent[name] == (folder / name).read_bytes() for name in sent)
    assert f'weights="hf://{REPO}"' in sent["README.md"].decode()  # the card names the real repo
    # the manifest entry is pinned to the returned commit
    models = load_manifest(manifest)["models"]
    entry = models["micro-pub"]
    assert set(models) == {"keep", "micro-pub"}
    assert (entry["repo_id"], entry["revision"], entry["status"]) == (REPO, SHA, "published")
    assert entry["files"] == json.loads((folder / "release.json").read_text())["files"]
    assert json.loads(capsys.readouterr().out)["revision"] == SHA

    # the loader finds it through a local HF cache laid out for that revision, offline
    huggingface_hub.set_client_factory(default_client_factory)
    cache = tmp_path / "hf"
    repo = cache / ("models--" + REPO.replace("/", "--"))
    (repo / "snapshots" / SHA).mkdir(parents=True)
    for name, data in sent.items():
        (repo / "snapshots" / SHA / name).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(SHA)
    monkeypatch.setenv("MCJEPA_MANIFEST", str(manifest))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n_requests = len(hub.requests)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 3, 64, 64, generator=g), torch.randn(1, 3, 64, 64, generator=g)
    model = load_model("micro-pub")
    with torch.no_grad():
        assert torch.equal(model(a, b), trained(a, b))
    assert len(hub.requests) == n_requests  # nothing went to the network
    shutil.rmtree(repo / "snapshots" / SHA)
    with pytest.raises(Exception, match="HF_HUB_OFFLINE is set"):
        load_model("micro-pub")


def test_publish_default_branch_and_errors(hub, release, capsys):
    folder, manifest = release
    entry = publish_release(folder, REPO, manifest=manifest)
    assert "visibility" not in hub.created  # the account's default
    assert hub.branches == [] and hub.commits[0]["revision"] == "main"
    assert entry["revision"] == SHA and entry["metadata"]["branch"] == "main"
    # re-publishing over a published entry needs --force
    hub.commits.clear()
    assert publish_main([str(folder), "--repo-id", REPO, "--manifest", str(manifest), "--name", "micro-pub"]) == 0
    assert load_manifest(manifest)["models"]["micro-pub"]["revision"] == SHA  # same commit: unchanged entry
    hub.sha = "1" * 40  # a new commit would move a published entry: refused without --force
    assert publish_main([str(folder), "--repo-id", REPO, "--manifest", str(manifest), "--name", "micro-pub"]) == 2
    assert "--force" in capsys.readouterr().err
    assert load_manifest(manifest)["models"]["micro-pub"]["revision"] == SHA
    assert (
        publish_main([str(folder), "--repo-id", REPO, "--manifest", str(manifest), "--name", "micro-pub", "--force"])
        == 0
    )
    assert load_manifest(manifest)["models"]["micro-pub"]["revision"] == "1" * 40
    hub.commits.clear()
    with pytest.raises(PublishError, match="ORG/NAME"):
        publish_release(folder, "no-slash", manifest=manifest)
    (folder / "encoder.safetensors").write_bytes(b"corrupt")
    assert publish_main([str(folder), "--repo-id", REPO, "--manifest", str(manifest)]) == 2
    assert "does not match the sha256" in capsys.readouterr().err
    assert hub.commits == []  # nothing was uploaded
