#!/bin/bash
# The README's demo: a buffer server and a leginondb server on this machine, provisioned by
# ansible/site.yml exactly as a facility's would be, then a few exposures "acquired": Leginon
# records them in leginondb, the camera writes the movies into its share, and embuffer moves
# them, named after their Leginon images, to the buffer and on to primary storage.
#   tools/demo.sh           # the whole demo, from fresh hosts every time (make demo)
#   tools/demo.sh acquire   # a few more exposures on the running demo hosts
#   tools/demo.sh clean     # tear the demo hosts and their network down (make demo-clean)
# The hosts are molecule's default scenario, so `make test` (which starts that scenario with
# a destroy) replaces them; they stay up otherwise, and the last lines say how to look around.
set -euo pipefail
cd "$(dirname "$0")/.."
BUFFER=embuffer-buffer-01
DB=embuffer-leginondb
CAMERA_FOLDER=/mnt/k3-cam-01
SESSION=26nov26a
SESSION_PATH=alice/26nov26a/rawdata
MOVIES=${EMBUFFER_DEMO_MOVIES:-3}
TIMEOUT=${EMBUFFER_DEMO_TIMEOUT:-180}
# what the last run showed: the status screen as the terminal got it, and as a picture
CAPTURE=.work/demo
ACTION=${1:-run}

step() { printf '\n==> %s\n' "$*"; }

clean() {
  step "Tearing down the demo hosts $BUFFER and $DB and their network"
  if [ -x .venv/bin/molecule ] && command -v podman >/dev/null; then
    tools/molecule.sh default destroy
  elif command -v podman >/dev/null; then
    podman rm -f -t 0 "$BUFFER" "$DB" >/dev/null 2>&1 || true
    podman network rm -f embuffer-molecule >/dev/null 2>&1 || true
  fi
  rm -rf "$CAPTURE"
  echo "demo hosts removed (the test-host image stays cached; make demo builds them again)"
}

provision() {
  if [ ! -x .venv/bin/molecule ] || ! command -v podman >/dev/null; then
    step "Installing the tools (tools/setup-host.sh)"
    bash tools/setup-host.sh
  fi
  # Every run starts from fresh hosts, whatever an earlier run left behind (a failure half way,
  # containers removed by hand, hosts still up from the last demo).
  step "Clearing what an earlier run left behind (molecule destroy)"
  tools/molecule.sh default destroy
  step "Test hosts $BUFFER and $DB (molecule create: image, containers, leginondb with a session)"
  tools/molecule.sh default create
  step "Provisioning $BUFFER with ansible/site.yml (storage, registration, embuffer services)"
  EMBUFFER_NETWORK_CHECKED=1 tools/molecule.sh default converge
}

require_hosts() {
  local name
  for name in "$BUFFER" "$DB"; do
    if [ "$(podman container inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then
      echo "the demo host $name is not running: run make demo first" >&2
      exit 1
    fi
  done
}

acquire() {
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
  # 8 frames of 1024x1024 int16 each: a 16 MiB MRC movie with a whole, valid header.
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
  local deadline=$((SECONDS + TIMEOUT)) arrived
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
}

show() {
  step "Camera share $CAMERA_FOLDER (each camera copy removed only after its buffer copy was verified)"
  podman exec "$BUFFER" ls -l "$CAMERA_FOLDER"
  step "Buffer: /bufferdata/frames/$SESSION_PATH (named after the Leginon images, owned by the session's uid/gid)"
  podman exec "$BUFFER" sh -c "ls -l /bufferdata/frames/$SESSION_PATH | grep -E '_demo_${stamp}_'"
  step "Primary storage: /primary/frames/$SESSION_PATH (same names, same layout)"
  podman exec "$BUFFER" sh -c "ls -l /primary/frames/$SESSION_PATH | grep -E '_demo_${stamp}_'"
  step "What the services logged about these movies"
  podman exec "$BUFFER" sh -c "journalctl --no-pager -o cat -u embuffer-ingest -u embuffer-archive | grep 'demo_${stamp}' | tail -n $((MOVIES * 2))"

  step "embuffer status (as on the buffer server's terminal)"
  # The status screen is drawn for a terminal; TTY_COMPATIBLE/FORCE_COLOR and COLUMNS give
  # rich that terminal also when this demo runs into a pipe or a log file.
  mkdir -p "$CAPTURE"
  podman exec -e TTY_COMPATIBLE=1 -e FORCE_COLOR=1 -e COLUMNS=110 "$BUFFER" \
    runuser -u embuffer -- /opt/embuffer/venv/bin/embuffer status | tee "$CAPTURE/status.ansi"
  .venv/bin/python tools/status_svg.py --title "embuffer status on $BUFFER" \
    < "$CAPTURE/status.ansi" > "$CAPTURE/status.svg"

  step "Prometheus metrics on $BUFFER, http://127.0.0.1:9814/metrics (embuffer-metrics.service)"
  podman exec "$BUFFER" python3 -c '
import sys, time, urllib.request
deadline = time.monotonic() + 60
while True:  # the counters follow the journal within a scrape or two
    text = urllib.request.urlopen("http://127.0.0.1:9814/metrics", timeout=10).read().decode()
    archived = [line for line in text.splitlines() if line.startswith("embuffer_archived_movies_total{")]
    if archived and float(archived[0].split()[-1]) >= int(sys.argv[1]) or time.monotonic() > deadline:
        break
    time.sleep(2)
wanted = ("embuffer_up ", "embuffer_ingested_movies_total{", "embuffer_archived_movies_total{",
          "embuffer_archive_backlog_files", "embuffer_buffer_time_to_full_seconds")
print("\n".join(line for line in text.splitlines() if line.startswith(wanted)))
print(f"({len(text.splitlines())} lines in all)")' "$MOVIES"
}

closing() {
  cat <<EOF

The demo hosts are still running. To look around:
  podman exec -it $BUFFER bash
      the buffer server: embuffer status, journalctl -u embuffer-ingest, ls /primary/frames
  podman exec -it $DB mariadb leginondb
      leginondb: BufferHostData, BufferFramePathData
  tools/demo.sh acquire
      a few more exposures, sent through the same hosts
The status screen above is kept in $CAPTURE/ (tools/status-picture.sh makes the README's PNG from it).
Tear everything down with:
  make demo-clean
EOF
}

case $ACTION in
  run) provision; acquire; show; closing ;;
  acquire) require_hosts; acquire; show; closing ;;
  clean) clean ;;
  *) echo "usage: $0 [run|acquire|clean]" >&2; exit 2 ;;
esac
