#!/usr/bin/env bash
# Builds the Debian package of the node: /usr/bin/edge, the systemd unit, /etc/edge/node.toml
# (a conffile) and the scripts that create the `edge` user and its state folder.
#
#   scripts/package-deb.sh                      # for this machine (amd64)
#   scripts/package-deb.sh --target aarch64-unknown-linux-gnu   # arm64, after
#                                               # scripts/cross-aarch64.sh built the binary
#   scripts/package-deb.sh --check              # then install it here (root), start the
#                                               # packaged node as its user without systemd,
#                                               # deploy and call an app, purge
# The package lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

target=""
check=false
while [[ $# -gt 0 ]]; do
  case $1 in
    --target) target=$2; shift 2 ;;
    --check) check=true; shift ;;
    *) echo "usage: $0 [--target TRIPLE] [--check]" >&2; exit 2 ;;
  esac
done

case ${target:-$(rustc -vV | sed -n 's/^host: //p')} in
  x86_64-*) arch=amd64 ;;
  aarch64-*) arch=arm64 ;;
  *) echo "package-deb: no Debian architecture for target ${target}" >&2; exit 2 ;;
esac
if [[ -n $target ]]; then
  binary=target/$target/release/edge
  [[ -x $binary ]] || { echo "package-deb: $binary missing; build it first (scripts/cross-aarch64.sh)" >&2; exit 1; }
else
  cargo build --release --locked -p edge-host --bin edge
  binary=target/release/edge
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' host/Cargo.toml | head -1)
stage=$(mktemp -d)
chmod 0755 "$stage" # the package's ./ : dpkg must never see a 0700 root
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$binary" "$stage/usr/bin/edge"
# Without the line tables the release profile keeps: a quarter of the size on the gateway.
case $arch in
  amd64) strip "$stage/usr/bin/edge" ;;
  arm64) aarch64-linux-gnu-strip "$stage/usr/bin/edge" ;;
esac
install -D -m 0644 packaging/systemd/edge.service "$stage/usr/lib/systemd/system/edge.service"
# The packaged config is the documented default with the state folder systemd provides.
install -d "$stage/etc/edge"
sed 's|^data_dir = ".edge-data"|data_dir = "/var/lib/edge"|' edge-config/node.toml \
  > "$stage/etc/edge/node.toml"
grep -q '^data_dir = "/var/lib/edge"' "$stage/etc/edge/node.toml" ||
  { echo "package-deb: could not set data_dir in the packaged node.toml" >&2; exit 1; }
install -D -m 0644 edge-config/prices.toml "$stage/usr/share/edge/prices.toml"
install -D -m 0644 README.md "$stage/usr/share/doc/edge-host/README.md"
install -d "$stage/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/edge/node.toml > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
# The oldest glibc the binary runs on: the newest symbol version it references (the build
# machine's glibc decides it, so it is read from the binary rather than written down).
case $arch in
  amd64) objdump=objdump ;;
  arm64) objdump=aarch64-linux-gnu-objdump ;;
esac
glibc=$("$objdump" -T "$stage/usr/bin/edge" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' |
  sort -uV | tail -1)
[[ -n $glibc ]] || { echo "package-deb: cannot read the glibc version the binary needs" >&2; exit 1; }
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@GLIBC@/$glibc/" \
  packaging/debian/control.in > "$stage/DEBIAN/control"
mkdir -p target/debian
deb=target/debian/edge-host_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "package-deb: built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n 's/^ *\(Package\|Version\|Architecture\|Depends\):/  &/p'

$check || exit 0

# The check: a real install with dpkg on this machine, the node started the way the unit
# starts it (its user, its config, its state folder) but without systemd, which this machine
# and CI containers do not run as PID 1.
[[ $arch == amd64 ]] || { echo "package-deb: --check runs the amd64 package only" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "package-deb: --check installs the package: run as root" >&2; exit 2; }
dpkg -i "$deb" >/dev/null
cleanup() {
  [[ -n ${node:-} ]] && kill -TERM "$node" 2>/dev/null && wait "$node" 2>/dev/null
  dpkg --purge edge-host >/dev/null 2>&1 || true
  rm -rf "$stage" /var/lib/edge
}
trap cleanup EXIT
getent passwd edge >/dev/null || { echo "check: the package did not create the edge user" >&2; exit 1; }
[[ $(stat -c '%U %a' /var/lib/edge) == "edge 700" ]] ||
  { echo "check: /var/lib/edge is not owned by edge with mode 0700" >&2; exit 1; }
log=$(mktemp)
setpriv --reuid=edge --regid=edge --init-groups --no-new-privs \
  /usr/bin/edge serve --config /etc/edge/node.toml --data-dir /var/lib/edge \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$log" 2>&1 &
node=$!
for _ in $(seq 1 300); do
  grep -q '^edge: admin API listening on ' "$log" && break
  kill -0 $node 2>/dev/null || { cat "$log"; echo "check: the packaged node did not start" >&2; exit 1; }
  sleep 0.1
done
admin=$(sed -n 's/^edge: admin API listening on //p' "$log")
data=$(sed -n 's/^edge: data plane listening on //p' "$log")
[[ -n $admin ]] || { cat "$log"; echo "check: no admin address" >&2; exit 1; }
cargo build --release --locked --target wasm32-wasip2 --manifest-path guests/Cargo.toml -q
/usr/bin/edge deploy hello guests/target/wasm32-wasip2/release/hello.wasm \
  --node "$admin" --data-dir /var/lib/edge >/dev/null
answer=$(curl -fsS "$data/hello")
[[ $answer == "hello from edge 1: /hello" ]] || { echo "check: unexpected answer: $answer" >&2; exit 1; }
[[ $(stat -c '%U' /var/lib/edge/db) == edge ]] || { echo "check: state not written as edge" >&2; exit 1; }
echo "package-deb: installed, started as user edge from /etc/edge/node.toml, served hello ($answer)"
