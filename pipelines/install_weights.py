"""Copy a training run's weights into the package as NAME (adds the SHA-256 to the sidecar)."""
import hashlib, json, shutil, sys
from pathlib import Path
src, name = Path(sys.argv[1]), sys.argv[2]
dst = Path("dmenet_geo/weights")
shutil.copyfile(src, dst / f"{name}.pt")
meta = json.loads(src.with_suffix(".json").read_text())
meta["sha256"] = hashlib.sha256((dst / f"{name}.pt").read_bytes()).hexdigest()
(dst / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
print(meta["sha256"])
