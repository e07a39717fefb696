#!/usr/bin/env bash
# Fetches and builds what tests/qemu needs, cached outside the repository:
#   - QEMU >= 10.1 with the vfio-user-pci client (Debian 12 has 7.2): the
#     source package of a newer Debian QEMU, built for x86_64-softmmu only;
#   - the Debian 12 guest kernel (linux-image .deb, extracted, not installed;
#     its crypto modules too, for the SEC guest's initramfs) and the
#     hisi_qm/hisi_zip/hisi_sec2/hisi_hpre modules built out of tree from
#     linux-source-6.1 against the matching linux-headers;
#   - busybox-static for the initramfs, SeaBIOS and QEMU's option ROMs.
# Idempotent: a second run only checks the stamps (seconds).
# Cache: $ACCMIG_QEMU_CACHE, else /var/cache/accmig-qemu when writable, else
# ${XDG_CACHE_HOME:-~/.cache}/accmig-qemu. /etc/apt is never touched: newer
# Debian suites are read through a private apt configuration in the cache.
# On success prints the path of an env file (KEY=VALUE lines) on stdout;
# exit 77 (meson's skip) with the reason on stderr when a piece cannot be had.
set -euo pipefail

QEMU_PIN="1:10.2.2+ds-1"        # known to work; newest >= 10.1 otherwise
KVER_PKG="linux-image-amd64"    # the Debian 12 kernel metapackage to follow

skip() { echo "qemu-deps: SKIP: $*" >&2; exit 77; }
log() { echo "qemu-deps: $*" >&2; }

if [ -n "${ACCMIG_QEMU_CACHE:-}" ]; then
    C=$ACCMIG_QEMU_CACHE
elif mkdir -p /var/cache/accmig-qemu 2>/dev/null && [ -w /var/cache/accmig-qemu ]; then
    C=/var/cache/accmig-qemu
else
    C=${XDG_CACHE_HOME:-$HOME/.cache}/accmig-qemu
fi
mkdir -p "$C"
ENVF=$C/env.sh

# Fast path: everything built before and still there.
if [ -f "$ENVF" ]; then
    ok=1
    while IFS='=' read -r k v; do
        case $k in ACCMIG_*) [ -e "$v" ] || ok=0 ;; esac
    done <"$ENVF"
    # An env file from before the SEC/HPRE modules: build them.
    grep -q '^ACCMIG_HISI_HPRE_KO=' "$ENVF" || ok=0
    if [ $ok = 1 ]; then echo "$ENVF"; exit 0; fi
    log "cached env incomplete; rebuilding what is missing"
fi

exec 9>"$C/.lock"
flock 9   # one builder at a time (meson may start two tests)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
syspkgs=(gcc gcc-12 make ninja-build pkg-config python3-venv libglib2.0-dev
         libfdt-dev flex bison xz-utils busybox-static libelf-dev bc)
missing=()
for p in "${syspkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || skip "apt-get update failed"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        skip "cannot install ${missing[*]}"
fi

# --- private apt view of newer suites (sources + trixie binaries) --------
A=$C/apt
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/etc"
KR=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$A/etc/sources.list" <<EOF
deb-src [signed-by=$KR] http://deb.debian.org/debian sid main
deb-src [signed-by=$KR] http://deb.debian.org/debian trixie-backports main
deb [signed-by=$KR] http://deb.debian.org/debian trixie main
EOF
APTO=(-o "Dir::Etc::SourceList=$A/etc/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
      -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache"
      -o "Dir::State::status=/var/lib/dpkg/status" -o "APT::Sandbox::User=root")
private_update() {
    [ -f "$A/.updated" ] && return 0
    apt-get "${APTO[@]}" update -qq >/dev/null 2>&1 || skip "cannot read the newer Debian suites"
    touch "$A/.updated"
}

# --- QEMU ------------------------------------------------------------------
qemu_bin=$(ls "$C"/build-qemu-*/qemu-system-x86_64 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$qemu_bin" ]; then
    private_update
    mkdir -p "$C/src" && cd "$C/src"
    # The pinned version if the archive still has it, else the newest
    # >= 10.1 that downloads (dpkg's version order).
    vers=$(apt-cache "${APTO[@]}" showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' |
           while read -r v; do
               n=0
               for w in $(apt-cache "${APTO[@]}" showsrc qemu 2>/dev/null | sed -n 's/^Version: //p'); do
                   dpkg --compare-versions "$w" gt "$v" && n=$((n + 1))
               done
               echo "$n $v"
           done | sort -n | cut -d' ' -f2)
    [ -n "$vers" ] || skip "no QEMU source package in the newer suites"
    echo "$vers" | grep -qxF "$QEMU_PIN" && vers=$(printf '%s\n%s' "$QEMU_PIN" "$vers")
    ver=""
    for v in $vers; do
        u=${v#*:}; u=${u%%+*}; u=${u%%-*}
        dpkg --compare-versions "$u" ge 10.1 || continue
        log "fetching QEMU $v"
        if apt-get "${APTO[@]}" source --download-only "qemu=$v" >"$C/src/fetch.log" 2>&1; then
            ver=$v; up=$u; break
        fi
        log "QEMU $v: download failed ($(tail -1 "$C/src/fetch.log"))"
    done
    [ -n "$ver" ] || skip "no QEMU >= 10.1 source could be downloaded"
    rm -rf "qemu-$up"
    dpkg-source --no-check -x qemu_"${ver#*:}".dsc "qemu-$up" >/dev/null ||
        skip "cannot unpack QEMU $ver"
    # Debian strips the vendored meson wheel: meson >= 1.5 and pycotap from
    # trixie's .debs, unpacked into the cache (not installed).
    mkdir -p "$C/debs" "$C/pytools"
    (cd "$C/debs" && apt-get "${APTO[@]}" download meson python3-pycotap >/dev/null 2>&1) ||
        skip "cannot download meson/pycotap from trixie"
    for d in "$C"/debs/meson_*.deb "$C"/debs/python3-pycotap_*.deb; do dpkg-deb -x "$d" "$C/pytools"; done
    PYT=$C/pytools/usr/lib/python3/dist-packages
    B=$C/build-qemu-$up
    rm -rf "$B"; mkdir -p "$B"; cd "$B"
    log "configuring QEMU $up (log: $B/configure.log)"
    PYTHONPATH=$PYT "$C/src/qemu-$up/configure" --target-list=x86_64-softmmu \
        --disable-docs --disable-werror --without-default-features --enable-tcg --enable-kvm \
        --enable-fdt=system --disable-download --disable-install-blobs \
        >configure.log 2>&1 || skip "QEMU configure failed (see $B/configure.log)"
    # The venv configure made must keep finding meson when ninja reruns it.
    echo "$PYT" >"$(echo "$B"/pyvenv/lib/python3*/site-packages)/accmig-pytools.pth"
    grep -q '^CONFIG_VFIO_USER=y' x86_64-softmmu-config-devices.mak ||
        skip "QEMU $up has no vfio-user-pci client"
    log "building QEMU $up (nice 19, 2 jobs; log: $B/build.log)"
    nice -n 19 ninja -j2 qemu-system-x86_64 >build.log 2>&1 ||
        skip "QEMU build failed (see $B/build.log)"
    qemu_bin=$B/qemu-system-x86_64
fi

# --- firmware: SeaBIOS and the -kernel option ROMs (Debian 12 .debs) ---------
FW=$C/firmware
if [ ! -f "$FW/bios-256k.bin" ] || [ ! -f "$FW/linuxboot_dma.bin" ]; then
    mkdir -p "$C/debs" "$FW/x" && cd "$C/debs"
    apt-get -o APT::Sandbox::User=root download seabios qemu-system-data >/dev/null 2>&1 ||
        skip "cannot download seabios/qemu-system-data"
    for d in seabios_*.deb qemu-system-data_*.deb; do dpkg-deb -x "$d" "$FW/x"; done
    cp "$FW/x/usr/share/seabios/bios-256k.bin" "$FW/x/usr/share/qemu/linuxboot_dma.bin" \
       "$FW/x/usr/share/qemu/kvmvapic.bin" "$FW/"
    rm -rf "$FW/x"
fi

# --- guest kernel, headers, hisi modules --------------------------------------
K=$C/kernel
kdep=$(apt-cache depends "$KVER_PKG" 2>/dev/null | sed -n 's/.*Depends: \(linux-image-6\.1\.[^ ]*\)/\1/p' | head -1 || true)
[ -n "$kdep" ] || kdep=$(ls -d "$K"/root/boot/vmlinuz-* 2>/dev/null | sed 's|.*/vmlinuz-|linux-image-|' | tail -1 || true)
[ -n "$kdep" ] || skip "no Debian 12 6.1 kernel package known"
kver=${kdep#linux-image-}
KR=$K/root
S=$K/src/linux-source-6.1/drivers/crypto/hisilicon
HB=$K/hisi-$kver
if [ ! -f "$KR/boot/vmlinuz-$kver" ] || [ ! -f "$S/sec2/sec_main.c" ]; then
    mkdir -p "$K/debs" "$KR" && cd "$K/debs"
    abi=${kver%-amd64}
    log "fetching kernel $kver, its headers and linux-source-6.1"
    apt-get -o APT::Sandbox::User=root download "linux-image-$kver" "linux-headers-$kver" \
        "linux-headers-$abi-common" linux-kbuild-6.1 linux-source-6.1 >/dev/null 2>&1 ||
        skip "cannot download the kernel packages for $kver"
    for d in linux-image-"$kver"_*.deb linux-headers-"$kver"_*.deb linux-headers-"$abi"-common_*.deb \
             linux-kbuild-6.1_*.deb; do
        dpkg-deb -x "$d" "$KR"
    done
    H=$KR/usr/src/linux-headers-$kver
    # The headers include their common half by absolute path: point it here.
    sed -i "s|^include /usr/src/|include $KR/usr/src/|" "$H/Makefile"
    rm -rf "$K/src"; mkdir -p "$K/src"
    dpkg-deb --fsys-tarfile linux-source-6.1_*.deb | tar x -O ./usr/src/linux-source-6.1.tar.xz |
        tar xJ -C "$K/src" linux-source-6.1/drivers/crypto/hisilicon ||
        skip "cannot unpack linux-source-6.1"
    rm -f "$HB/hisi_zip.ko"   # rebuild against the fresh tree
fi
# The hisi modules, out of tree: the QM, ZIP, SEC (hisi_sec2) and HPRE.
if [ ! -f "$HB/hisi_zip.ko" ] || [ ! -f "$HB/hisi_sec2.ko" ] || [ ! -f "$HB/hisi_hpre.ko" ]; then
    H=$KR/usr/src/linux-headers-$kver
    rm -rf "$HB"; mkdir -p "$HB"
    cp "$S"/qm.c "$S"/sgl.c "$S"/debugfs.c "$S"/qm_common.h "$S"/zip/zip.h "$S"/zip/zip_main.c \
       "$S"/zip/zip_crypto.c "$S"/sec2/sec.h "$S"/sec2/sec_crypto.h "$S"/sec2/sec_main.c \
       "$S"/sec2/sec_crypto.c "$S"/hpre/hpre.h "$S"/hpre/hpre_main.c "$S"/hpre/hpre_crypto.c "$HB"/
    # The Makefiles of drivers/crypto/hisilicon{,/zip,/sec2,/hpre}, flattened.
    # Kconfig ties the drivers to ARM64; an external build only needs the
    # symbols.
    printf '%s\n' 'obj-m += hisi_qm.o hisi_zip.o hisi_sec2.o hisi_hpre.o' \
        'hisi_qm-objs := qm.o sgl.o debugfs.o' 'hisi_zip-objs := zip_main.o zip_crypto.o' \
        'hisi_sec2-objs := sec_main.o sec_crypto.o' 'hisi_hpre-objs := hpre_main.o hpre_crypto.o' \
        >"$HB/Kbuild"
    log "building hisi_qm.ko, hisi_zip.ko, hisi_sec2.ko, hisi_hpre.ko for $kver"
    nice -n 19 make -C "$H" M="$HB" CONFIG_CRYPTO_DEV_HISI_QM=m CONFIG_CRYPTO_DEV_HISI_ZIP=m \
        CONFIG_CRYPTO_DEV_HISI_SEC2=m CONFIG_CRYPTO_DEV_HISI_HPRE=m \
        modules >"$HB/build.log" 2>&1 || skip "hisi module build failed (see $HB/build.log)"
fi

[ -x /bin/busybox ] && /bin/busybox --list | grep -x cpio >/dev/null || skip "no busybox with cpio"

cat >"$ENVF.tmp" <<EOF
ACCMIG_QEMU=$qemu_bin
ACCMIG_QEMU_FW=$FW
ACCMIG_KERNEL=$KR/boot/vmlinuz-$kver
ACCMIG_KHEADERS=$KR/usr/src/linux-headers-$kver
ACCMIG_HISI_KO=$K/hisi-$kver
ACCMIG_HISI_SEC_KO=$K/hisi-$kver/hisi_sec2.ko
ACCMIG_HISI_HPRE_KO=$K/hisi-$kver/hisi_hpre.ko
ACCMIG_KMODULES=$KR/lib/modules/$kver
ACCMIG_BUSYBOX=/bin/busybox
EOF
mv "$ENVF.tmp" "$ENVF"
echo "$ENVF"
