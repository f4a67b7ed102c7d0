#!/bin/bash
# The README's demo: a buffer server and a leginondb server on this machine, provisioned by
# ansible/site.yml exactly as a facility's would be, then a few exposures "acquired": Leginon
# records them in leginondb, the camera writes the movies into its share, and embuffer moves
# them, named after their Leginon images, to the buffer and on to primary storage.
# The hosts stay up afterwards; the last lines say how to look around and tear them down.
set -euo pipefail
cd "$(dirname "$0")/.."
BUFFER=embuffer-buffer-01
DB=embuffer-leginondb
CAMERA_FOLDER=/mnt/k3-cam-01
SESSION=26nov26a
SESSION_PATH=alice/26nov26a/rawdata
MOVIES=${EMBUFFER_DEMO_MOVIES:-3}
TIMEOUT=${EMBUFFER_DEMO_TIMEOUT:-180}

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x .venv/bin/molecule ] || ! command -v podman >/dev/null; then
  step "Installing the tools (tools/setup-host.sh)"
  bash tools/setup-host.sh
fi

step "Test hosts $BUFFER and $DB (molecule create: image, containers, leginondb with a session)"
tools/molecule.sh default create

step "Provisioning $BUFFER with ansible/site.yml (storage, registration, embuffer services)"
tools/molecule.sh default converge

stamp=$(date -u +%Y%m%d_%H%M%S)
step "Leginon acquires $MOVIES exposures in session $SESSION (rows in leginondb)"
for n in $(seq 1 "$MOVIES"); do
  frames="demo_${stamp}_$(printf %02d "$n")"
  image="${SESSION}_demo_${stamp}_$(printf %05d "$n")ex"
  podman exec "$DB" mariadb leginondb -e "
    INSERT INTO CameraEMData (\`REF|SessionData|session\`, \`REF|InstrumentData|ccdcamera\`,
                              \`frames name\`, \`save frames\`, \`align frames\`, nframes)
    SELECT s.DEF_id, i.DEF_id, '$frames', 1, 0, 8 FROM SessionData s, InstrumentData i
    WHERE s.name = '$SESSION' AND i.hostname = 'k3-cam-01';
    INSERT INTO AcquisitionImageData (\`REF|SessionData|session\`, \`REF|CameraEMData|camera\`, filename, label)
    SELECT \`REF|SessionData|session\`, LAST_INSERT_ID(), '$image', 'Exposure'
    FROM CameraEMData WHERE DEF_id = LAST_INSERT_ID();"
  echo "  frames name $frames -> image $image"
done

step "The camera writes the movies into its share $CAMERA_FOLDER on $BUFFER"
# 8 frames of 1024x1024 int16 each: an 8 MiB MRC movie with a whole, valid header.
podman exec -i "$BUFFER" python3 - "$CAMERA_FOLDER" "$stamp" "$MOVIES" <<'PY'
import os, struct, sys
folder, stamp, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
nx, ny, nz = 1024, 1024, 8
for n in range(1, count + 1):
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, 1)
    struct.pack_into("<3i", header, 28, nx, ny, nz)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    header[208:216] = b"MAP DD\x00\x00"
    path = os.path.join(folder, f"demo_{stamp}_{n:02d}.mrc")
    with open(path, "wb") as movie:
        movie.write(header)
        for _ in range(nz):          # frame by frame, as a camera streams them
            movie.write(os.urandom(nx * ny * 2))
    print(f"  wrote {path} ({os.path.getsize(path)} bytes)")
PY

step "Waiting for the movies to reach primary storage (at most ${TIMEOUT}s)"
deadline=$((SECONDS + TIMEOUT))
while :; do
  arrived=$(podman exec "$BUFFER" sh -c "ls /primary/frames/$SESSION_PATH 2>/dev/null | grep -c '_demo_${stamp}_.*ex\.frames\.mrc$'" || true)
  echo "  $(date -u +%T) on primary: ${arrived:-0}/$MOVIES"
  [ "${arrived:-0}" -ge "$MOVIES" ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "not all movies arrived; the services' log:" >&2
    podman exec "$BUFFER" journalctl --no-pager -n 40 -u embuffer-ingest -u embuffer-archive >&2
    exit 1
  fi
  sleep 2
done

step "Camera share (emptied only after each copy was verified)"
podman exec "$BUFFER" ls -l "$CAMERA_FOLDER"
step "Buffer: /bufferdata/frames/$SESSION_PATH (named after the Leginon images, owned by the session's uid/gid)"
podman exec "$BUFFER" sh -c "ls -l /bufferdata/frames/$SESSION_PATH | grep -E 'total|_demo_${stamp}_'"
step "Primary: /primary/frames/$SESSION_PATH"
podman exec "$BUFFER" sh -c "ls -l /primary/frames/$SESSION_PATH | grep -E 'total|_demo_${stamp}_'"
step "What the ingest service logged"
podman exec "$BUFFER" sh -c "journalctl --no-pager -o cat -u embuffer-ingest -u embuffer-archive | grep 'demo_${stamp}\|_demo_${stamp}' | tail -n $((MOVIES * 2))"
step "embuffer status"
podman exec "$BUFFER" runuser -u embuffer -- /opt/embuffer/venv/bin/embuffer status

cat <<EOF2

The demo hosts are still running:
  podman exec -it $BUFFER bash            # the buffer server (embuffer status, journalctl -u embuffer-ingest)
  podman exec -it $DB mariadb leginondb   # leginondb (BufferHostData, BufferFramePathData)
  tools/demo.sh                           # acquire more exposures
Tear them down with:
  tools/molecule.sh default destroy
EOF2
