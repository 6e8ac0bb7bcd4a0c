#!/usr/bin/env bash
# Runs process mode's cgroup tests on cgroup v2 (issue 14), in a Debian 12 VM booted with KVM: a machine that
# mounts cgroup v1 (as this project's CI machine does) never runs the v2 branches of src/backends/process/cgroup.ts
# and src/backends/shared/cgroup-usage.ts; Debian 12 with systemd mounts v2 only (its default).
#
#   bash scripts/cgroup2-vm.sh [vitest arguments...]   (root; default: test/vm/cgroup-tests.txt's files)
#
# 1. Installs qemu-system-x86 and debootstrap (apt) if missing.
# 2. Builds once and caches under $REED_VM_CACHE (/var/cache/reed-vm): a debootstrap'd Debian 12 tree with systemd,
#    bubblewrap, iproute2, e2fsprogs, clang/lld/wasi-libc (tests build WASM from C) and Debian's kernel and initrd,
#    as an ext4 image made with `mkfs.ext4 -d`. The image is rebuilt when IMAGE_VERSION or the package list changes.
# 3. Boots it (qemu -enable-kvm; no KVM is a failure, never a skip) with -snapshot (the cached image is never
#    written), this checkout shared read-only over virtio-9p (dist/ and node_modules/ built here: run `npm run
#    build` first) under a tmpfs overlay at the same path, this machine's node (same glibc) and a read-write run
#    directory. systemd starts test/vm/in-vm.sh, which runs vitest, writes the output to the run directory and the
#    serial console, and powers off.
# 4. Exits with the tests' status (any part missing, the VM not booting or not finishing within REED_VM_TIMEOUT
#    seconds is a failure with a message).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${REED_VM_CACHE:-/var/cache/reed-vm}"
MIRROR="${REED_VM_MIRROR:-http://deb.debian.org/debian}"
TIMEOUT="${REED_VM_TIMEOUT:-2400}"
MEM="${REED_VM_MEM:-4G}"
CPUS="${REED_VM_CPUS:-2}"
# kvm (the default: /dev/kvm must answer) or tcg (qemu's emulator, explicitly asked for: slower by an order of
# magnitude; for a machine whose KVM cannot boot a stock kernel, such as a PVM host that runs only PVM guest kernels).
ACCEL="${REED_VM_ACCEL:-kvm}"
IMAGE_VERSION=1
PACKAGES=systemd,systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,kmod,bubblewrap,iproute2,e2fsprogs,procps,util-linux,clang,lld,wasi-libc,libclang-rt-14-dev-wasm32

fail() {
  echo "cgroup2-vm: $*" >&2
  exit 1
}
log() { echo "cgroup2-vm: $*" >&2; }

[ "$(id -u)" = 0 ] || fail "must run as root (debootstrap, mkfs.ext4 -d keeping owners, /dev/kvm)"
case "$ACCEL" in
kvm)
  [ -e /dev/kvm ] || fail "/dev/kvm is missing: this machine has no KVM (the VM is not run without it; REED_VM_ACCEL=tcg emulates)"
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || fail "/dev/kvm is not readable and writable"
  ACCEL_ARGS=(-enable-kvm -cpu host)
  ;;
tcg) ACCEL_ARGS=(-accel tcg,thread=multi -cpu max) ;;
*) fail "REED_VM_ACCEL must be kvm or tcg, not $ACCEL" ;;
esac
[ -d "$REPO/node_modules" ] || fail "$REPO/node_modules is missing: npm ci first"
[ -f "$REPO/dist/src/index.js" ] || fail "$REPO/dist/ is not built: npm run build first"
[ -x /usr/bin/node ] || fail "/usr/bin/node is missing (the VM runs this machine's node)"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
    fail "apt-get install ${need[*]} failed"
fi

STAMP="v$IMAGE_VERSION $PACKAGES"
IMAGE="$CACHE/root.ext4"

build_image() {
  local tree="$CACHE/root.tmp"
  mkdir -p "$CACHE"
  rm -f "$IMAGE" "$CACHE/stamp"
  # A tree a previous build debootstrap'd completely (same packages) is reused; any other is started again.
  if [ "$(cat "$CACHE/debootstrap.ok" 2>/dev/null)" != "$STAMP" ]; then
    rm -rf "$tree"
    log "building the VM image under $CACHE (debootstrap bookworm: several minutes, once)"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$tree" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
      fail "debootstrap failed: see $CACHE/debootstrap.log"
    echo "$STAMP" >"$CACHE/debootstrap.ok"
  fi
  echo reed-vm >"$tree/etc/hostname"
  printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$tree/etc/fstab"
  passwd -R "$tree" -d root >/dev/null
  # The unit that runs the tests (test/vm/in-vm.sh from the shared checkout) once the system is up, then powers off.
  cat >"$tree/etc/systemd/system/reed-tests.service" <<'UNIT'
[Unit]
Description=reed-plugin-loader tests on cgroup v2
After=multi-user.target
Wants=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/reed-vm-run
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStopPost=/usr/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
UNIT
  cat >"$tree/usr/local/sbin/reed-vm-run" <<'RUN'
#!/bin/sh
# Mounts the run directory (tag reedrun, read-write) and the checkout (tag reedsrc, read-only) at the path it has on
# the host machine (reedrun/repo-path) under a tmpfs overlay (vitest writes its cache into node_modules), then runs
# the checkout's test/vm/in-vm.sh. Its status goes to reedrun/status.
set -u
mkdir -p /run/reed-run /run/reed-src /run/reed-over
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 reedrun /run/reed-run || { echo "reed-vm: no run share"; exit 1; }
echo booted >/run/reed-run/booted
repo="$(cat /run/reed-run/repo-path)"
# This machine's node at the path it has there (the runner's sandbox binds it from there).
cp /run/reed-run/bin/node /usr/bin/node
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,ro,cache=loose reedsrc /run/reed-src &&
  mount -t tmpfs -o size=1G tmpfs /run/reed-over && mkdir -p /run/reed-over/upper /run/reed-over/work "$repo" &&
  mount -t overlay -o lowerdir=/run/reed-src,upperdir=/run/reed-over/upper,workdir=/run/reed-over/work overlay "$repo" ||
  { echo "reed-vm: the checkout could not be mounted" | tee /run/reed-run/in-vm.log; echo 1 >/run/reed-run/status; sync; exit 1; }
/bin/sh "$repo/test/vm/in-vm.sh" /run/reed-run "$repo"
echo $? >/run/reed-run/status
sync
RUN
  chmod 755 "$tree/usr/local/sbin/reed-vm-run"
  ln -sf /etc/systemd/system/reed-tests.service "$tree/etc/systemd/system/multi-user.target.wants/reed-tests.service"
  # Nothing else to wait for: no getty on the serial console, no network.
  rm -f "$tree/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
  ln -sf /dev/null "$tree/etc/systemd/system/serial-getty@ttyS0.service"
  ln -sf /dev/null "$tree/etc/systemd/system/systemd-networkd-wait-online.service"
  local kernel initrd
  kernel="$(ls "$tree"/boot/vmlinuz-* | sort -V | tail -1)"
  initrd="$(ls "$tree"/boot/initrd.img-* | sort -V | tail -1)"
  [ -f "$kernel" ] && [ -f "$initrd" ] || fail "no kernel or initrd in the debootstrap'd tree"
  cp "$kernel" "$CACHE/vmlinuz"
  cp "$initrd" "$CACHE/initrd.img"
  rm -rf "$tree/var/cache/apt/archives/"*.deb
  local mb
  mb=$(($(du -sm "$tree" | cut -f1) + 1536))
  mkfs.ext4 -q -L reed-vm -d "$tree" "$IMAGE.tmp" "${mb}M" || fail "mkfs.ext4 -d failed"
  mv "$IMAGE.tmp" "$IMAGE"
  rm -rf "$tree" "$CACHE/debootstrap.ok"
  echo "$STAMP" >"$CACHE/stamp"
}

if [ ! -f "$IMAGE" ] || [ ! -f "$CACHE/stamp" ] || [ "$(cat "$CACHE/stamp")" != "$STAMP" ]; then
  build_image
else
  log "using the cached image $IMAGE"
fi

RUN="$(mktemp -d /tmp/reed-vm-run.XXXXXX)"
cleanup() { rm -rf "$RUN"; }
trap cleanup EXIT
mkdir -p "$RUN/bin"
cp /usr/bin/node "$RUN/bin/node"
echo "$REPO" >"$RUN/repo-path"
if [ "$#" -gt 0 ]; then printf '%s\n' "$@" >"$RUN/args"; else grep -v '^#' "$REPO/test/vm/cgroup-tests.txt" >"$RUN/args"; fi

log "booting ($ACCEL, -m $MEM -smp $CPUS); the tests' output follows"
status=0
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 \
  "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$CPUS" \
  -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 quiet loglevel=3 systemd.show_status=0" \
  -drive "file=$IMAGE,format=raw,if=virtio,snapshot=on" \
  -virtfs "local,path=$REPO,mount_tag=reedsrc,security_model=none,readonly=on" \
  -virtfs "local,path=$RUN,mount_tag=reedrun,security_model=none" \
  -nic none -display none -no-reboot -serial stdio -monitor none </dev/null || status=$?

[ "$status" = 124 ] && fail "the VM did not finish within ${TIMEOUT} s (REED_VM_TIMEOUT)"
[ "$status" = 0 ] || fail "qemu failed (status $status)"
[ -f "$RUN/booted" ] || fail "the VM did not reach the test unit (no run share mounted)"
[ -f "$RUN/status" ] || fail "the tests did not finish in the VM (no status written)"
[ -f "$RUN/in-vm.log" ] && cp "$RUN/in-vm.log" "${REED_VM_LOG:-/tmp/reed-vm-last.log}"
tests="$(cat "$RUN/status")"
log "tests' status in the VM: $tests (log: ${REED_VM_LOG:-/tmp/reed-vm-last.log})"
exit "$tests"
