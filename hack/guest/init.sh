#!/bin/busybox sh
# PID 1 of kova's test guest: reads the cloud-init NoCloud config drive kova attached, takes the
# hostname and static address it names, says so (and its MTU) on the serial console, and answers
# HTTP on port 80 with its instance-id, so tests can prove the guest booted with what it was
# given; /boot-id tells one boot from the next, /cgi-bin/disk reads and writes a word on its root
# disk, and /cgi-bin/fetch makes it a client too.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "kova-guest: $*" > /dev/ttyS0; }

while read -r mod; do insmod "/lib/modules/$mod" 2>/dev/null; done < /etc/modules.order

mkdir -p /cidata
for _ in 1 2 3 4 5 6 7 8 9 10; do
  for dev in /dev/sr0 /dev/sr1; do mount -t iso9660 -o ro "$dev" /cidata 2>/dev/null && break 2; done
  sleep 0.2
done
[ -f /cidata/meta-data ] || say "error=no-config-drive"

# kova writes meta-data and network-config as JSON (valid YAML): one key per line.
field() { sed -n "s/^ *\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" "$2" | head -n 1; }
ID=$(field instance-id /cidata/meta-data)
HN=$(field local-hostname /cidata/meta-data)
CIDR=$(sed -n '/"addresses"/{n;s/^ *"\([0-9./]*\)".*/\1/p;}' /cidata/network-config | head -n 1)
GW=$(field via /cidata/network-config)
MAC=$(field macaddress /cidata/network-config)

hostname "$HN"
IFACE=eth0
for d in /sys/class/net/*; do
  [ "$(cat "$d/address" 2>/dev/null)" = "$MAC" ] && IFACE=$(basename "$d")
done
ip link set lo up
ip link set "$IFACE" up
ip addr add "$CIDR" dev "$IFACE"
[ -n "$GW" ] && ip route add default via "$GW"

mkdir -p /www/cgi-bin
echo "$ID" > /www/index.html
cat /proc/sys/kernel/random/boot_id > /www/boot-id
head -c 3000 /dev/zero | tr '\0' 'k' > /www/big
# /cgi-bin/fetch?ADDRESS[:PORT][/PATH]: the guest itself fetches it over HTTP and answers with what
# it got, so tests see traffic between guests and out of a Network from the guest's side; /big
# is 3000 bytes, more than one full-size frame.
cat > /www/cgi-bin/fetch <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
case "$QUERY_STRING" in *[!0-9a-z.:/]*|'') echo "bad-address"; exit 0;; esac
addr=${QUERY_STRING%%/*}
path=/
case "$QUERY_STRING" in */*) path=/${QUERY_STRING#*/} ;; esac
host=${addr%%:*}
port=80
case "$addr" in *:*) port=${addr##*:} ;; esac
# nc, not wget: busybox's static wget crashes in glibc's resolver; nc takes the address as is.
body=$(printf 'GET %s HTTP/1.0\r\n\r\n' "$path" | nc -w 3 "$host" "$port" 2>/dev/null | awk 'b { print } /^\r?$/ { b = 1 }')
if [ -n "$body" ]; then echo "$body"; else echo "fetch-failed"; fi
CGI
# /cgi-bin/disk?WORD writes WORD 1 MiB into the root disk, synced; /cgi-bin/disk reads it back
# (nothing on a fresh disk), so tests see a rebuild replace the disk and a migration keep it.
cat > /www/cgi-bin/disk <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
case "$QUERY_STRING" in *[!0-9a-z-]*) echo "bad-word"; exit 0;; esac
[ -n "$QUERY_STRING" ] && printf '%s\n' "$QUERY_STRING" | dd of=/dev/vda bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null
dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | tr -d '\000' | head -n 1
CGI
chmod 755 /www/cgi-bin/fetch /www/cgi-bin/disk
httpd -p 80 -h /www
say "instance-id=$ID hostname=$HN ip=${CIDR%/*}"
say "mtu=$(cat "/sys/class/net/$IFACE/mtu")"
say "boot-id=$(cat /www/boot-id)"

# The ACPI power button (virsh shutdown, kova's graceful stop) powers the guest off: the button
# driver reports a press as an input event on its "Power Button" device.
for ev in /sys/class/input/event*; do
  [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ] || continue
  (head -c 1 "/dev/input/${ev##*/}" > /dev/null && say "power button: powering off" && poweroff -f) &
done
# A root shell on the serial console (kova's console endpoint attaches to that port), again
# whenever it exits; setsid makes ttyS0 its controlling terminal.
(while :; do setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'; sleep 1; done) &
while :; do sleep 3600; done
