#!/usr/bin/env bash
# make stage: Cadenza installed and played on a Pi-like Debian 12 (arm64, systemd, the ALSA
# sequencer) booted in qemu. Builds or reuses the image, boots it with a copy of the working
# tree, runs tests/stage/guest/scenario.py as root inside (it reboots the guest once), brings
# the results out and prints `stage: N passed, M failed`; exits non-zero on any failure.
#
#   tests/stage/stage.sh              (ARCH=armhf for the 32-bit path; STAGE_CACHE, STAGE_TIMEOUT)
#
# Needs root (mmdebstrap, binfmt) and installs the Debian tools it misses. The image is cached
# under $STAGE_CACHE (default ~/.cache/cadenza/stage), keyed by the hash of its recipe
# (build-image.sh and the guest's runner unit); each run boots a qcow2 overlay, so the cache stays
# clean. pip inside the guest uses this machine's pip index settings and CA bundle, read at run time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ARCH=${ARCH:-arm64}
STAGE_CACHE=${STAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cadenza/stage}
STAGE_TIMEOUT=${STAGE_TIMEOUT:-1800}   # seconds for the whole guest run (boot, scenario, reboot, power-off)
t_all=$(date +%s.%N)
elapsed() { python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$1"; }
say() { echo "stage: $*"; }

# ---- tools ----------------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then echo "stage: run as root (mmdebstrap and binfmt need it)" >&2; exit 2; fi
case $ARCH in
  arm64) qemu=qemu-system-aarch64 machine="-M virt -cpu cortex-a72" console=ttyAMA0 ;;
  armhf) qemu=qemu-system-arm machine="-M virt,highmem=off -cpu cortex-a15" console=ttyAMA0 ;;
  *) echo "stage: ARCH is arm64 or armhf" >&2; exit 2 ;;
esac
# qemu-user runs the foreign packages' scripts while the image is built: binfmt_misc must be mounted
# (before qemu-user-static is installed, so that its package registers the interpreters).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
need=()
for t in "$qemu:qemu-system-arm" qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support \
         mmdebstrap:mmdebstrap arch-test:arch-test mkfs.ext4:e2fsprogs qemu-img:qemu-utils; do
  command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable >/dev/null 2>&1 || true

# ---- the image (cached by recipe) -------------------------------------------------------
key=$(cat "$here/build-image.sh" "$here/guest/stage-run.service" | sha256sum | cut -c1-16)
img=$STAGE_CACHE/$ARCH-$key
if [ ! -e "$img/ok" ]; then
  say "building the $ARCH image (cold cache: $img)"
  t=$(date +%s.%N)
  rm -rf "$img"; mkdir -p "$img"
  "$here/build-image.sh" "$ARCH" "$img" > "$img/build.log" 2>&1 || { tail -30 "$img/build.log"; say "image build failed"; exit 1; }
  built_s=$(elapsed "$t")
  echo "$built_s" > "$img/build-seconds"
  touch "$img/ok"
  say "image built in $(cat "$img/build-seconds") s"
else
  say "reusing the $ARCH image $img (built in $(cat "$img/build-seconds" 2>/dev/null || echo ?) s)"
fi

# ---- this run: an overlay, a share with the tree, the scenario and the pip settings ---------
run=$(mktemp -d "${TMPDIR:-/tmp}/cadenza-stage.XXXXXX")
cleanup() { [ -n "${qpid:-}" ] && kill "$qpid" 2>/dev/null; rm -rf "$run"; }
trap cleanup EXIT
t=$(date +%s.%N)
qemu-img create -q -f qcow2 -b "$img/root.img" -F raw "$run/run.qcow2"
share=$run/share; mkdir -p "$share"
# A clean export of the working tree: tracked and untracked-but-not-ignored files as they are now.
(cd "$repo" && git ls-files -z -co --exclude-standard | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _ \
  | tar --null -T - -cf "$share/cadenza.tar")
cp "$here/guest/run.sh" "$here/guest/scenario.py" "$share/"
echo "$ARCH" > "$share/arch"
# pip: the same index settings and CA bundle this machine uses (file:// indexes exist only here).
python3 - "$share" <<'PY'
import configparser, os, shutil, subprocess, sys
share = sys.argv[1]
def get(key):
    env = os.environ.get("PIP_" + key.split(".")[1].upper().replace("-", "_"))
    if env:
        return env
    r = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""
cfg = configparser.ConfigParser()
cfg["global"] = {}
index = get("global.index-url")
if index and not index.startswith("file:"):
    cfg["global"]["index-url"] = index
extra = " ".join(u for u in get("global.extra-index-url").split() if not u.startswith("file:"))
if extra:
    cfg["global"]["extra-index-url"] = extra
cert = get("global.cert") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or ""
if cert and os.path.isfile(cert):
    shutil.copy(cert, os.path.join(share, "ca.crt"))
    cfg["global"]["cert"] = "/etc/ssl/certs/stage-pip-ca.crt"
cfg["global"]["default-timeout"] = "180"
cfg["global"]["disable-pip-version-check"] = "1"
with open(os.path.join(share, "pip.conf"), "w") as f:
    cfg.write(f)
PY
prep_s=$(elapsed "$t")
say "run prepared in $prep_s s (overlay, tree $(du -h "$share/cadenza.tar" | cut -f1))"

# ---- boot; the guest runs the scenario, reboots once, powers off ------------------------------
say "booting ($ARCH, qemu TCG; host-side limit ${STAGE_TIMEOUT} s; console in $run/console.log)"
t=$(date +%s.%N)
echo "$(date +%s.%N)" > "$share/host-boot-start"
set +e
timeout -k 10 "$STAGE_TIMEOUT" "$qemu" $machine -smp 2 -m 2048 -accel tcg,thread=multi \
  -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "root=/dev/vda rw console=$console quiet" \
  -drive "file=$run/run.qcow2,if=virtio,format=qcow2" \
  -netdev user,id=n0 -device virtio-net-device,netdev=n0 \
  -virtfs "local,path=$share,mount_tag=share,security_model=none" \
  -nographic -serial "file:$run/console.log" -monitor none < /dev/null > "$run/qemu.log" 2>&1 &
qpid=$!
wait "$qpid"; qrc=$?
qpid=
set -e
guest_s=$(elapsed "$t")
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then say "the guest hung: killed after ${STAGE_TIMEOUT} s"; fi

# ---- results -----------------------------------------------------------------------------
keep=${STAGE_KEEP:-$STAGE_CACHE/last-run}
rm -rf "$keep"; mkdir -p "$keep"
cp -r "$share/." "$keep/" 2>/dev/null || true
rm -f "$keep/cadenza.tar" "$keep/ca.crt"
cp "$run/console.log" "$run/qemu.log" "$keep/" 2>/dev/null || true
passed=0 failed=0
if [ -f "$share/results.txt" ]; then
  while IFS= read -r line; do
    echo "  $line"
    case $line in PASS*) passed=$((passed+1));; FAIL*) failed=$((failed+1));; esac
  done < "$share/results.txt"
fi
if [ ! -f "$share/done" ]; then
  say "the scenario did not finish (qemu exit $qrc); last console lines:"
  tail -25 "$run/console.log" | sed 's/^/  | /'
  failed=$((failed+1))
fi
if [ -f "$share/times.txt" ]; then
  # boot1/boot2: seconds from the kernel's start to the scenario's; part1/part2: the scenario's own seconds.
  say "times: image $( [ -n "${built_s:-}" ] && echo "built in $built_s s" || echo "cached" ), run prepared in $prep_s s, $(python3 - "$share/times.txt" <<'PY'
import sys
t = dict(l.split(None, 1) for l in open(sys.argv[1]).read().splitlines() if " " in l)
g = lambda k: t.get(k, "?").strip()
print(f"boot {g('boot1_scenario_start_uptime')} s, install {g('install_seconds')} s, "
      f"checks {float(g('part1_seconds')) - float(g('install_seconds')):.1f} s, "
      f"reboot to scenario {g('boot2_scenario_start_uptime')} s, part 2 {g('part2_seconds')} s"
      if all(k in t for k in ("part1_seconds", "install_seconds")) else
      "; ".join(f"{k} {v}" for k, v in t.items()))
PY
)"
fi
say "guest ran ${guest_s} s (boot, scenario, reboot, power-off); whole run $(elapsed "$t_all") s; logs in $keep"
echo "stage: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
