#!/usr/bin/env bash
# Integration test: the real Linux 6.1 hisi_qm/hisi_zip VF driver in a Debian
# 12 x86 guest under QEMU's vfio-user-pci client, against `accmig serve`.
#
#   tests/qemu/run-driver-test.sh ACCMIG_BINARY [WORKDIR]
#
# For each case (v4, v3: doorbell isolation on, the driver rings SQ/CQ
# doorbells in BAR4; v4-noiso: --no-db-isolation, BAR2 doorbells): starts
# `accmig serve --dir D --vfs 2`, boots
# QEMU (q35 + intel-iommu with interrupt remapping: 4 MSI vectors need it)
# with the VF on D/vf0.sock and an initramfs of its own (busybox, the hisi
# modules, tests/qemu/guest/init, tests/qemu/guest/accmig_rt.ko). The guest
# checks, on each boot: probe, 4 MSI vectors, the hisi-deflate-acomp
# selftest, alg_qos (a VF->PF message the PF driver answers), device<->software deflate round trips, rmmod + insmod and the
# same again; then reboots itself (reboot -f, QEMU stays up) and the second
# boot must pass the same checks. The server's log then says how many
# doorbells came through BAR4: some with isolation, none without.
# Dependencies come from scripts/qemu-deps.sh (cached outside the repo; the
# first run builds QEMU, ~30+ minutes on 2 cores). Any missing piece: SKIP,
# exit 77. Every wait is bounded. Logs stay in WORKDIR.
# Env: ACCMIG_QEMU_ACCEL=tcg|kvm (default tcg), ACCMIG_QEMU_BOOT_TIMEOUT
# (seconds per boot, default 400), ACCMIG_QEMU_STALL (seconds of console
# silence that end a boot, default 60; a boot takes ~20 s under TCG),
# ACCMIG_QEMU_HW="v4 v3 v4-noiso" (the cases; "sec" and "sec-v3" run the
# hisi_sec2 VF driver against `accmig serve --engine sec` instead, with
# tests/qemu/guest/init-sec: every algorithm the driver registers must show
# "selftest : passed" in /proc/crypto, its jobs counted by the driver;
# "hpre" and "hpre-v3" the same with hisi_hpre, `--engine hpre` and
# tests/qemu/guest/init-hpre).
set -uo pipefail

ACCMIG=${1:?usage: run-driver-test.sh ACCMIG_BINARY [WORKDIR]}
HERE=$(cd "$(dirname "$0")" && pwd)
W=${2:-$(mktemp -d /tmp/accmig-qemu-test.XXXXXX)}
ACCEL=${ACCMIG_QEMU_ACCEL:-tcg}
BOOT_TIMEOUT=${ACCMIG_QEMU_BOOT_TIMEOUT:-400}
STALL=${ACCMIG_QEMU_STALL:-60}
HWS=${ACCMIG_QEMU_HW:-v4 v3 v4-noiso}
T0=$(date +%s)

skip() { echo "SKIP: $*"; exit 77; }
say() { echo "[qemu-test +$(( $(date +%s) - T0 ))s] $*"; }

[ -x "$ACCMIG" ] || skip "no accmig binary at $ACCMIG"
envf=$(bash "$HERE/../../scripts/qemu-deps.sh") || skip "scripts/qemu-deps.sh could not provide QEMU/kernel/modules (exit $?; see its messages above)"
# shellcheck disable=SC1090
. "$envf"
for v in ACCMIG_QEMU ACCMIG_QEMU_FW ACCMIG_KERNEL ACCMIG_KHEADERS ACCMIG_HISI_KO ACCMIG_BUSYBOX; do
    [ -e "${!v:-}" ] || skip "$v missing in $envf"
done
if [ "$ACCEL" = kvm ] && ! [ -w /dev/kvm ]; then ACCEL=tcg; fi
say "deps ready ($("$ACCMIG_QEMU" --version | head -1); accel $ACCEL; work dir $W)"

rm -rf "$W"; mkdir -p "$W"

# --- initramfs --------------------------------------------------------------
mkdir -p "$W/rt" "$W/root/bin" "$W/root/lib" "$W/root/proc" "$W/root/sys" "$W/root/dev" "$W/root/tmp"
cp "$HERE/guest/accmig_rt.c" "$HERE/guest/Kbuild" "$W/rt/"
if ! nice -n 10 make -C "$ACCMIG_KHEADERS" M="$W/rt" modules >"$W/rt/build.log" 2>&1; then
    tail -20 "$W/rt/build.log"
    echo "FAIL: tests/qemu/guest/accmig_rt.c does not build"; exit 1
fi
cp "$ACCMIG_BUSYBOX" "$W/root/bin/busybox"
cp "$HERE/guest/init" "$W/root/init"; chmod 755 "$W/root/init"
cp "$ACCMIG_HISI_KO/hisi_qm.ko" "$ACCMIG_HISI_KO/hisi_zip.ko" "$W/rt/accmig_rt.ko" "$W/root/lib/"
(cd "$W/root" && find . | "$ACCMIG_BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 >"$W/initrd.gz") ||
    skip "cannot build the initramfs"

# The SEC cases' initramfs: init-sec, hisi_qm + hisi_sec2, and the guest
# kernel's generic crypto modules that the driver's fallback tfms and the
# templates need (in load order; Debian builds them as modules).
SEC_CRYPTO="gf128mul ghash-generic ctr ecb ofb cfb xts ccm gcm libdes des_generic sha512_generic authenc"
case " $HWS " in
*" sec"*)
    [ -e "${ACCMIG_HISI_SEC_KO:-}" ] && [ -d "${ACCMIG_KMODULES:-}" ] ||
        skip "no hisi_sec2.ko or guest kernel modules in $envf"
    R=$W/root-sec
    mkdir -p "$R/bin" "$R/lib/crypto" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
    cp "$ACCMIG_BUSYBOX" "$R/bin/busybox"
    cp "$HERE/guest/init-sec" "$R/init"; chmod 755 "$R/init"
    cp "$ACCMIG_HISI_KO/hisi_qm.ko" "$ACCMIG_HISI_SEC_KO" "$R/lib/"
    for m in $SEC_CRYPTO; do
        f=$(find "$ACCMIG_KMODULES/kernel" -name "$m.ko" | head -1)
        [ -n "$f" ] || skip "guest kernel module $m.ko not found under $ACCMIG_KMODULES"
        cp "$f" "$R/lib/crypto/"
        echo "$m" >>"$R/lib/crypto/order"
    done
    (cd "$R" && find . | "$ACCMIG_BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 >"$W/initrd-sec.gz") ||
        skip "cannot build the SEC initramfs"
    ;;
esac

# The HPRE cases' initramfs: init-hpre, hisi_qm + hisi_hpre, the modules
# hisi_hpre links against and those of the default RNG (ECDH key generation;
# jitterentropy_rng is left out: it fails its health test under TCG, and
# drbg seeds itself without it).
HPRE_CRYPTO="ecc ecdh_generic libcurve25519-generic sha512_generic drbg"
case " $HWS " in
*" hpre"*)
    [ -e "${ACCMIG_HISI_HPRE_KO:-}" ] && [ -d "${ACCMIG_KMODULES:-}" ] ||
        skip "no hisi_hpre.ko or guest kernel modules in $envf"
    R=$W/root-hpre
    mkdir -p "$R/bin" "$R/lib/crypto" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
    cp "$ACCMIG_BUSYBOX" "$R/bin/busybox"
    cp "$HERE/guest/init-hpre" "$R/init"; chmod 755 "$R/init"
    cp "$ACCMIG_HISI_KO/hisi_qm.ko" "$ACCMIG_HISI_HPRE_KO" "$R/lib/"
    for m in $HPRE_CRYPTO; do
        f=$(find "$ACCMIG_KMODULES/kernel" -name "$m.ko" | head -1)
        [ -n "$f" ] || skip "guest kernel module $m.ko not found under $ACCMIG_KMODULES"
        cp "$f" "$R/lib/crypto/"
        echo "$m" >>"$R/lib/crypto/order"
    done
    (cd "$R" && find . | "$ACCMIG_BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 >"$W/initrd-hpre.gz") ||
        skip "cannot build the HPRE initramfs"
    ;;
esac

# --- one run: server + QEMU, two boots ----------------------------------------
srv_pid=""; qemu_pid=""
cleanup() {
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
    wait 2>/dev/null
}
trap cleanup EXIT

# wait_for SECONDS CMD...: polls CMD once a second until true or timeout.
wait_for() {
    local n=$1; shift
    while [ "$n" -gt 0 ]; do
        "$@" && return 0
        sleep 1; n=$((n - 1))
    done
    return 1
}
done_count() { local n; n=$(grep -c '^ACCMIG-BOOT-DONE' "$1" 2>/dev/null); echo "${n:-0}"; }
# wait_boots CONSOLE N PID: until N boots are done, QEMU is gone, or the
# console has been silent for STALL seconds (a hung probe or job), at most
# BOOT_TIMEOUT seconds.
wait_boots() {
    local left=$BOOT_TIMEOUT size last=-1 quiet=0
    while [ "$left" -gt 0 ]; do
        [ "$(done_count "$1")" -ge "$2" ] && return 0
        kill -0 "$3" 2>/dev/null || return 1
        size=$(stat -c %s "$1" 2>/dev/null || echo 0)
        if [ "$size" = "$last" ]; then
            quiet=$((quiet + 1))
            [ "$quiet" -ge "$STALL" ] && { say "console silent for ${STALL}s"; return 1; }
        else
            quiet=0; last=$size
        fi
        sleep 1; left=$((left - 1))
    done
    return 1
}

passed=0; failed=0; failures=()
result() {   # result NAME PASS|FAIL DETAIL
    if [ "$2" = PASS ]; then passed=$((passed + 1)); echo "ok   $1 $3"
    else failed=$((failed + 1)); failures+=("$1"); echo "FAIL $1 $3"; fi
}

# A case is HW[-noiso]: v4 or v3, with doorbell isolation (the default:
# the driver rings SQ/CQ doorbells in BAR4, trapped, since QEMU does not
# vouch for its guest's driver; docs/doorbells.md) or with --no-db-isolation
# (BAR2 doorbells, no BAR4).
run_hw() {
    local case=$1 hw=${1%-noiso} iso=1 D="$W/sock-$1" con="$W/console-$1.log" slog="$W/serve-$1.log"
    local extra=() initrd="$W/initrd.gz"
    [ "$case" != "$hw" ] && { iso=0; extra=(--no-db-isolation); }
    # sec, sec-v3: a SEC PF (--engine sec), the hisi_sec2 guest.
    case $hw in
    sec*) hw=${hw#sec}; hw=${hw#-}; hw=${hw:-v4}
          extra+=(--engine sec --qps 8); initrd="$W/initrd-sec.gz" ;;
    hpre*) hw=${hw#hpre}; hw=${hw#-}; hw=${hw:-v4}
          extra+=(--engine hpre --qps 8); initrd="$W/initrd-hpre.gz" ;;
    esac
    say "case $case: starting accmig serve"
    ACCMIG_LOG=info "$ACCMIG" serve --dir "$D" --vfs 2 --hw "$hw" "${extra[@]}" 2>"$slog" &
    srv_pid=$!
    if ! wait_for 20 test -S "$D/vf0.sock"; then
        result "$case-serve" FAIL "no socket $D/vf0.sock after 20 s"; tail -5 "$slog"
        kill "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; srv_pid=""
        return
    fi
    local machine="q35,memory-backend=mem"
    [ "$ACCEL" = kvm ] && machine="$machine,kernel-irqchip=split"
    say "case $case: booting the guest (QEMU $ACCEL)"
    "$ACCMIG_QEMU" -nodefaults -display none -monitor none -L "$ACCMIG_QEMU_FW" \
        -accel "$ACCEL" -machine "$machine" -m 512M -smp 1 \
        -object memory-backend-memfd,id=mem,size=512M,share=on \
        -device intel-iommu,intremap=on,caching-mode=on \
        -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$D/vf0.sock\",\"type\":\"unix\"}}" \
        -kernel "$ACCMIG_KERNEL" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 loglevel=3 rdinit=/init" \
        -serial "file:$con" >"$W/qemu-$case.log" 2>&1 &
    qemu_pid=$!
    wait_boots "$con" 1 "$qemu_pid"
    say "case $case: boot 1 $( [ "$(done_count "$con")" -ge 1 ] && echo done || echo 'did not finish')"
    [ "$(done_count "$con")" -ge 1 ] && wait_boots "$con" 2 "$qemu_pid"
    say "case $case: boot 2 $( [ "$(done_count "$con")" -ge 2 ] && echo done || echo 'did not finish')"
    kill "$qemu_pid" 2>/dev/null
    wait_for 20 eval "! kill -0 $qemu_pid 2>/dev/null" || kill -9 "$qemu_pid" 2>/dev/null
    wait "$qemu_pid" 2>/dev/null; qemu_pid=""
    kill "$srv_pid" 2>/dev/null
    local src=0
    if wait_for 20 eval "! kill -0 $srv_pid 2>/dev/null"; then wait "$srv_pid"; src=$?
    else kill -9 "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; src=timeout; fi
    srv_pid=""

    # The guest's own lines, boot by boot.
    local boot=0 line name verdict detail
    while IFS= read -r line; do
        line=${line%$'\r'}
        case $line in
            ACCMIG-BOOT-START*) boot=$((boot + 1)); [ $boot -le 2 ] || break
                                echo "-- $case boot $boot: $line" ;;
            ACCMIG-CHECK*)
                [ $boot -le 2 ] || break
                read -r _ name verdict detail <<<"$line"
                # Boot 2 runs after `reboot -f`: QEMU resets the machine and
                # unmaps guest RAM with DMA_UNMAP ranges spanning several maps
                # (one up to 2^64); the server must drop them all, or every
                # DMA_MAP after the reset gets EEXIST and the driver hangs in
                # its probe (so these checks failed before cddd52a, the
                # server's range DMA_UNMAP; issue 9).
                local tag="boot$boot"; [ $boot = 2 ] && tag="after-reboot"
                result "$case-$tag-$name" "$verdict" "$detail" ;;
            "  "*) [ $boot -le 2 ] && echo "   $line" ;;
        esac
    done <"$con"
    local n; n=$(done_count "$con")
    result "$case-boot1-complete" "$([ "$n" -ge 1 ] && echo PASS || echo FAIL)" "boot 1 ran to ACCMIG-BOOT-DONE"
    result "$case-after-reboot-complete" "$([ "$n" -ge 2 ] && echo PASS || echo FAIL)" \
        "guest reboot -f, boot 2 ran to ACCMIG-BOOT-DONE (fails if DMA_UNMAP leaves stale maps)"
    result "$case-serve-exit" "$([ "$src" = 0 ] && echo PASS || echo FAIL)" "accmig serve exit status $src on SIGTERM"
    # Where the doorbells went: the server counts, per session, the ones
    # taken from BAR4 pages. With isolation the Linux driver must use BAR4
    # (qm_db_v2), without it never.
    local paged
    paged=$(sed -n -E 's/.*vf0: session ended: [0-9]+ doorbells \(([0-9]+) from BAR4\).*/\1/p' "$slog" | awk '{ n += $1 } END { print n + 0 }')
    if [ $iso = 1 ]; then
        result "$case-bar4-doorbells" "$([ "$paged" -gt 0 ] && echo PASS || echo FAIL)" "$paged SQ/CQ doorbells through BAR4 (QUE_ISO_CFG=1)"
    else
        result "$case-bar2-doorbells" "$([ "$paged" = 0 ] && echo PASS || echo FAIL)" "$paged doorbells through BAR4 (there is none)"
    fi
    if [ "$n" -lt 2 ]; then
        echo "   console tail ($con):"; tail -25 "$con" | sed 's/^/     /'
        echo "   QEMU: $(tail -3 "$W/qemu-$case.log" | tr '\n' ' ')"
    fi
    echo "   server log ($slog): $(wc -l <"$slog") lines; errors/guest faults:"
    sed -n -E 's/^accmig\[[0-9]+\] (.*: (err|error|guest-error): .*)/\1/p' "$slog" | sed 's/msg [0-9]* //'  | sort | uniq -c | sort -rn | head -8 | sed 's/^/     /'
}

for hw in $HWS; do
    run_hw "$hw"
done
say "done"
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] || { echo "failed: ${failures[*]}"; exit 1; }
exit 0
