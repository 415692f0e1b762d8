"""Checks that an image keeps nothing of the machine that built it: no CA bundle or locally added CA,
no pip configuration with one, no build-host path, in its history, its environment or any layer.

    python3 docker/audit.py IMAGE [--forbid STRING ...]

Every layer is read from `docker save`, not only the final filesystem, because a file that a later
layer deletes is still stored in the layer that added it. Failing checks are printed and the exit
status is 1. Standard library only, so the host's python3 runs it.

What it looks for:
- the CA bundle given to builds (build.sh's PIP_CA_BUNDLE, default
  /etc/ssl/certs/ca-certificates.crt): a file with its exact content, in any layer;
- each CA added locally to the build host (Debian's /usr/local/share/ca-certificates/*.crt): its
  certificate's body in any file of any layer (a bundle that includes it, under any name);
- pip configuration files (pip.conf, pip.ini) and /run/secrets content in any layer;
- the forbidden strings (by default the repository's path and the torch wheel directory) in the
  image's history, environment and files, and the CA bundle's path in its history and environment;
- PIP_CERT and the CA variables (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, ...) in the environment.
The files holding certificates are listed, for the reader: the image's own trust stores (Debian's
ca-certificates, certifi's cacert.pem) are expected there.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tarfile

CHUNK = 1 << 22
CA_VARIABLES = (
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
)


def pem_bodies(path: str) -> list[bytes]:
    """The base64 body of each certificate in a PEM file, as one line without newlines."""
    bodies, current = [], None
    for line in pathlib.Path(path).read_bytes().splitlines():
        if line.startswith(b"-----BEGIN CERTIFICATE"):
            current = []
        elif line.startswith(b"-----END CERTIFICATE") and current is not None:
            bodies.append(b"".join(current))
            current = None
        elif current is not None:
            current.append(line.strip())
    return bodies


def probes(bodies: list[bytes]) -> list[bytes]:
    """A 64-character run from inside each certificate: found whatever the line breaks around it, as
    PEM files break at 64 characters from the body's start (the run starts at 64)."""
    return [b[64:128] for b in bodies if len(b) >= 128]


def scan(stream, needles: dict[bytes, str], bundle_hash: str | None, bundle_size: int):
    """(layer, path, what) for each hit in the layers of a `docker save` tar stream."""
    hits, cert_files = [], set()
    overlap = max((len(n) for n in needles), default=0) + len(b"BEGIN CERTIFICATE")
    with tarfile.open(fileobj=stream, mode="r|") as outer:
        for member in outer:
            if not member.isfile() or not (member.name.endswith("layer.tar") or member.name.startswith("blobs/")):
                continue
            layer = member.name
            raw = outer.extractfile(member)
            try:
                inner = tarfile.open(fileobj=raw, mode="r|")  # noqa: SIM115 (closed by the `with` below)
            except tarfile.ReadError:  # a config or manifest blob, not a layer
                continue
            with inner:
                for f in inner:
                    name = "/" + f.name.lstrip("./")
                    base = os.path.basename(name)
                    if base in ("pip.conf", "pip.ini"):
                        hits.append((layer, name, "a pip configuration file"))
                    if name.startswith("/run/secrets/") and f.isfile():
                        hits.append((layer, name, "a file under /run/secrets"))
                    if not f.isfile():
                        continue
                    data = inner.extractfile(f)
                    digest = hashlib.sha256() if bundle_hash and f.size == bundle_size else None
                    tail = b""
                    while chunk := data.read(CHUNK):
                        window = tail + chunk
                        if digest:
                            digest.update(chunk)
                        if b"BEGIN CERTIFICATE" in window:
                            cert_files.add(name)
                        for needle, what in needles.items():
                            if needle in window:
                                hits.append((layer, name, what))
                        tail = window[-overlap:]
                    if digest and digest.hexdigest() == bundle_hash:
                        hits.append((layer, name, "the build host's CA bundle, byte for byte"))
    return sorted(set(hits)), sorted(cert_files)


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--ca-bundle", default=os.environ.get("PIP_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
    parser.add_argument("--local-cas", default="/usr/local/share/ca-certificates/*.crt")
    wheels = os.environ.get("TORCH_WHEELS_DIR", "/opt/wheels")
    parser.add_argument("--forbid", action="append", default=None, help="a string no layer may hold")
    args = parser.parse_args()
    forbid = args.forbid if args.forbid is not None else [root, wheels]
    # The bundle's path is Debian's standard one, which libraries in the image name too: it is looked
    # for in the history and environment only (where it would mean the build passed it on).
    forbid_meta = forbid + [args.ca_bundle]
    failures = []

    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", args.image],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    config = json.loads(
        subprocess.run(["docker", "image", "inspect", args.image], check=True, capture_output=True).stdout
    )[0]
    env = config["Config"].get("Env") or []
    for s in forbid_meta:
        if s in history:
            failures.append(f"history names {s!r}")
        if any(s in e for e in env):
            failures.append(f"environment names {s!r}")
    for e in env:
        if e.split("=", 1)[0] in CA_VARIABLES:
            failures.append(f"environment sets {e}")
    if "BEGIN CERTIFICATE" in history:
        failures.append("history holds a certificate")

    needles = {s.encode(): f"the string {s!r}" for s in forbid}
    local = sorted(glob.glob(args.local_cas))
    for path in local:
        for probe in probes(pem_bodies(path)):
            needles[probe] = f"the certificate of {path}"
    bundle_hash = None
    bundle_size = -1
    if os.path.isfile(args.ca_bundle):
        bundle_hash = hashlib.sha256(pathlib.Path(args.ca_bundle).read_bytes()).hexdigest()
        bundle_size = os.path.getsize(args.ca_bundle)

    save = subprocess.Popen(["docker", "save", args.image], stdout=subprocess.PIPE)
    hits, cert_files = scan(save.stdout, needles, bundle_hash, bundle_size)
    if save.wait() != 0:
        failures.append("docker save failed")
    failures += [f"{what} in {path} (layer {layer})" for layer, path, what in hits]

    print(f"audit {args.image}: history {len(history.splitlines())} steps, {len(env)} environment variables")
    print(
        f"  searched every layer for: the CA bundle {args.ca_bundle} (sha256 {str(bundle_hash)[:12]}), "
        f"{len(local)} locally added CA(s) ({', '.join(local) or 'none'}), pip.conf/pip.ini, /run/secrets, "
        f"and the strings {forbid}"
    )
    mozilla = "/usr/share/ca-certificates/mozilla/"
    print(f"  files with a certificate in them ({len(cert_files)}; the image's own trust stores and TLS code):")
    print(f"    {mozilla}*.crt: {sum(name.startswith(mozilla) for name in cert_files)} (Debian's ca-certificates)")
    for name in cert_files:
        if not name.startswith(mozilla):
            print(f"    {name}")
    for failure in failures:
        print(f"  FAIL: {failure}")
    print(f"audit {args.image}: {'FAILED' if failures else 'clean'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
