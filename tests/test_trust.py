"""`orch trust`: explicit trust-on-first-use against real sshd's host keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestrator.cli.trust import entry_name, remove_entries

from .test_hosts import orch


def _setup(fleet_, tmp_path, known_hosts: Path, **inv):
    inv_path = fleet_.write_inventory(tmp_path / "hosts.yml", **inv)
    cfg = fleet_.write_config(tmp_path / "orch.yml", ssh={"known_hosts": str(known_hosts)})
    return ["--config", str(cfg), "--inventory", str(inv_path), "--state-dir", str(tmp_path / "st")]


def _trust(tmp_path, base, *args, stdin: str | None = None):
    if stdin is None:
        return orch(tmp_path, *base, "trust", *args)
    import os
    import sys
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORCH_CONFIG", "ORCH_INVENTORY", "ORCH_HOME")}
    return subprocess.run([sys.executable, "-m", "orchestrator", *base, "trust", *args],
                          cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_trust_records_a_new_key_then_hosts_work(ssh_fleet, tmp_path):
    kh = tmp_path / "ssh" / "known_hosts"  # neither the file nor its directory exist
    base = _setup(ssh_fleet, tmp_path, kh, names=["h1", "h2"])
    assert orch(tmp_path, *base, "hosts", "--json").returncode == 1  # unknown keys

    r = _trust(tmp_path, base, "h1", "h2", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(ssh_fleet.host("h1").dir / "ssh_host_ed25519_key.pub")],
        capture_output=True, text=True, check=True).stdout.split()[1]
    assert fingerprint in r.stdout
    lines = kh.read_text().splitlines()
    assert lines == [ssh_fleet.known_hosts_line("h1").rsplit(" ", 1)[0],
                     ssh_fleet.known_hosts_line("h2").rsplit(" ", 1)[0]]
    assert orch(tmp_path, *base, "hosts", "--json").returncode == 0
    assert kh.stat().st_mode & 0o777 == 0o600                  # a new file: 0600
    assert sorted(p.name for p in kh.parent.iterdir()) == ["known_hosts"]   # no temp left

    again = _trust(tmp_path, base, "h1", "--yes")
    assert again.returncode == 0 and "already trusted" in again.stdout
    assert kh.read_text().splitlines() == lines


def test_trust_asks_and_no_stdin_means_no(ssh_fleet, tmp_path):
    kh = tmp_path / "known_hosts"
    base = _setup(ssh_fleet, tmp_path, kh, names=["h1"])
    r = _trust(tmp_path, base, "h1")  # stdin is /dev/null
    assert r.returncode == 1 and "not trusted" in r.stdout
    assert not kh.exists()
    r = _trust(tmp_path, base, "h1", stdin="n\n")
    assert r.returncode == 1 and not kh.exists()
    r = _trust(tmp_path, base, "h1", stdin="y\n")
    assert r.returncode == 0 and "Trust this key" in r.stderr
    assert kh.read_text().startswith(ssh_fleet.host("h1").known_host_pattern + " ssh-ed25519 ")


def test_changed_key_needs_replace(ssh_fleet, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("# my hosts\n" + ssh_fleet.known_hosts_line("h1", key_of="h2") + "\n"
                  + ssh_fleet.known_hosts_line("h2") + "\n")
    kh.chmod(0o640)
    before = kh.read_text()
    base = _setup(ssh_fleet, tmp_path, kh, names=["h1", "h2"])

    r = _trust(tmp_path, base, "h1", "--yes")
    assert r.returncode == 1 and "CHANGED" in r.stdout and "--replace" in r.stdout
    assert kh.read_text() == before
    assert orch(tmp_path, *base, "hosts", "h1", "--json").returncode == 1

    r = _trust(tmp_path, base, "h1", "--yes", "--replace", "--json")
    assert r.returncode == 0, r.stderr
    (out,) = json.loads(r.stdout)
    assert out["status"] == "replaced" and out["fingerprint"].startswith("SHA256:")
    text = kh.read_text()
    assert "# my hosts" in text and ssh_fleet.known_hosts_line("h2") in text
    assert ssh_fleet.known_hosts_line("h1", key_of="h2") not in text
    assert ssh_fleet.known_hosts_line("h1").rsplit(" ", 1)[0] in text
    assert orch(tmp_path, *base, "hosts", "--json").returncode == 0
    assert kh.stat().st_mode & 0o777 == 0o640                  # replaced, its mode kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".known_hosts")]


def test_replace_removes_a_hashed_entry(ssh_fleet, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(ssh_fleet.known_hosts_line("h3", key_of="h4") + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert kh.read_text().startswith("|1|")
    base = _setup(ssh_fleet, tmp_path, kh, names=["h3"])
    assert _trust(tmp_path, base, "h3", "--yes").returncode == 1
    r = _trust(tmp_path, base, "h3", "--yes", "--replace")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "|1|" not in kh.read_text()
    assert orch(tmp_path, *base, "hosts", "--json").returncode == 0


def test_trust_an_ssh_config_alias(ssh_fleet, tmp_path):
    """The recorded name is the config's HostName and Port, which is what connections check."""
    kh = tmp_path / "known_hosts"
    base = _setup(ssh_fleet, tmp_path, kh, names=["h5"], via_alias=True)
    r = _trust(tmp_path, base, "h5", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert kh.read_text().startswith(ssh_fleet.host("h5").known_host_pattern + " ")
    assert orch(tmp_path, *base, "hosts", "--json").returncode == 0


def test_trust_bad_names_exit_2_and_change_nothing(ssh_fleet, tmp_path):
    kh = tmp_path / "known_hosts"
    base = _setup(ssh_fleet, tmp_path, kh, names=["h1"])
    r = _trust(tmp_path, base, "h1", "nope", "--yes")
    assert r.returncode == 2 and "nope" in r.stderr
    assert not kh.exists()


def test_trust_unreachable_host_exit_1(make_ssh_fleet, tmp_path):
    fleet_ = make_ssh_fleet(2)
    kh = tmp_path / "known_hosts"
    base = _setup(fleet_, tmp_path, kh)
    fleet_.stop("h2")
    r = _trust(tmp_path, base, "h1", "h2", "--yes")
    assert r.returncode == 1 and "refused" in r.stdout
    assert kh.read_text().count("\n") == 1  # h1 was still recorded


def test_trust_local_host_is_a_no_op(tmp_path):
    r = orch(tmp_path, "--state-dir", str(tmp_path / "st"), "trust", "local", "--yes")
    assert r.returncode == 0 and "nothing to trust" in r.stdout


# -- the known_hosts editing, pure -------------------------------------------------------

def test_entry_name():
    assert entry_name("pc", 22) == "pc" and entry_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_remove_entries_keeps_everything_else():
    text = ("# comment\n"
            "@cert-authority *.lan ssh-ed25519 AAAACA\n"
            "pc,10.0.0.5 ssh-ed25519 AAAA1\n"
            "[pc]:2222 ssh-ed25519 AAAA2\n"
            "other ssh-rsa AAAA3\n"
            "*.lan ssh-ed25519 AAAA4\n")
    out, removed = remove_entries(text, {"pc"})
    assert removed == 1
    assert out == ("# comment\n@cert-authority *.lan ssh-ed25519 AAAACA\n"
                   "10.0.0.5 ssh-ed25519 AAAA1\n[pc]:2222 ssh-ed25519 AAAA2\n"
                   "other ssh-rsa AAAA3\n*.lan ssh-ed25519 AAAA4\n")
    out, removed = remove_entries(text, {"[pc]:2222"})
    assert removed == 1 and "AAAA2" not in out and "AAAA1" in out
