#!/usr/bin/env bash
# Prints a minimal busybox root filesystem as a tar stream on stdout, built from the host's
# static busybox (Debian: busybox-static). Used for the `busybox` base image, since no image
# can be pulled from a registry here.
#   scripts/mkrootfs-busybox.sh | berth import - busybox:latest
set -euo pipefail
bb=""
for c in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
  if [ -n "$c" ] && [ -x "$c" ] && file -L "$c" 2>/dev/null | grep -q 'statically linked'; then bb=$c; break; fi
done
if [ -z "$bb" ]; then
  # `file` may be missing; a static busybox runs with an empty environment and no loader check.
  for c in /bin/busybox /usr/bin/busybox; do [ -x "$c" ] && bb=$c && break; done
fi
[ -n "$bb" ] || { echo "mkrootfs-busybox: install busybox-static first (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -d "$root"/{bin,sbin,etc,proc,sys,dev,root,home,usr/bin,usr/sbin,var/log}
install -d -m 1777 "$root/tmp" "$root/var/tmp"
install -m 0755 "$bb" "$root/bin/busybox"
"$root/bin/busybox" --list | while read -r applet; do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
daemon:x:1:
tty:x:5:
nogroup:x:65534:
G
echo "busybox" > "$root/etc/hostname"
tar --numeric-owner --owner=0 --group=0 --sort=name --mtime='2024-01-01 00:00:00' -C "$root" -cf - .
