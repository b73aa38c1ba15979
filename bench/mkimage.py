#!/usr/bin/env python3
"""Writes an OCI image layout with N gzip layers of mixed data, for the pull benchmark.

    bench/mkimage.py DIR [LAYERS=4] [MB_PER_LAYER=50]

Each layer holds files of random bytes (incompressible) and of repeated text (compressible),
half and half, so compression and extraction both cost what they cost on real images.
"""
import gzip, hashlib, io, json, os, random, sys, tarfile, time

def blob(d, data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(d, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)

def layer(n, mb, rnd):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        total = mb << 20
        i = 0
        while total > 0:
            size = min(total, rnd.choice([64 << 10, 512 << 10, 2 << 20]))
            if i % 2 == 0:
                data = rnd.randbytes(size)
            else:
                line = ("layer %d file %d: the quick brown fox jumps over the lazy dog\n" % (n, i)).encode()
                data = (line * (size // len(line) + 1))[:size]
            ti = tarfile.TarInfo("data%d/f%05d" % (n, i))
            ti.size = size
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
            total -= size
            i += 1
    tar = raw.getvalue()
    return tar, gzip.compress(tar, compresslevel=6, mtime=0)

def main():
    d = sys.argv[1]
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    mb = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    os.makedirs(os.path.join(d, "blobs", "sha256"), exist_ok=True)
    rnd = random.Random(42)
    descs, diff_ids = [], []
    for n in range(layers):
        tar, gz = layer(n, mb, rnd)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        dg, size = blob(d, gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg, "size": size})
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "bench layer %d" % i} for i in range(layers)],
    }).encode()
    cd, cs = blob(d, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    }).encode()
    md, ms = blob(d, manifest)
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
    with open(os.path.join(d, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')

if __name__ == "__main__":
    main()
