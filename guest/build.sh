#!/usr/bin/env bash
# Builds every Rust guest of the workspace and copies the modules to wasm/ (committed; see docs/writing-a-guest.md).
#
#   bash guest/build.sh              build all guests into wasm/
#   bash guest/build.sh hello ...    build only the named outputs
#   bash guest/build.sh --check      rebuild into a temp dir; fail, naming the files, if they differ from wasm/
#
# Toolchain: Debian's Rust 1.63 (/usr/bin/cargo, /usr/bin/rustc, target wasm32-wasi) and Debian's vendored
# crates (guest/.cargo/config.toml). EDGEWASM_RUST=rustup uses the rustup cargo/rustc on PATH with target
# wasm32-wasip1 instead (not byte-identical to the committed modules, so --check insists on Debian's toolchain).
# EDGEWASM_CARGO / EDGEWASM_RUSTC point at a Debian-built cargo/rustc installed elsewhere.
set -euo pipefail

# One row per output module wasm/<name>.wasm. Rows build in one target dir per set of extra RUSTFLAGS and cargo
# args (guest/target/<slug of them>): two builds of one package with different flags never invalidate each other,
# and rows with the same flags share their compiled dependencies.
#   name               | cargo package     | extra RUSTFLAGS                | extra cargo args (e.g. --features simd)
GUESTS=(
  "hello               | hello             | -C target-feature=+bulk-memory |"
  # No +bulk-memory for the classifier rows: measured (interleaved, same source) it did not help a JPEG, a
  # 224x224x3 pixels or a 600 KB tensor request (the request is read in place, no big memcpy), and it made
  # JPEG decoding 7-9% slower (probably: its many small copies become memory.copy calls). See docs/classifier.md.
  "wasinn_classifier   | wasinn-classifier | -C target-feature=+simd128     |"
  "wasinn_compat       | wasinn-compat     |                                |"
  "classifier          | pure-classifier   | -C target-feature=+simd128     |"
  # The same guest with its INT8 GEMM on relaxed SIMD (C kernels, guest/effnet/csrc; needs clang-19): it
  # declares `relaxed-simd` in edgewasm.needs, so the host compiles it with relaxed SIMD on.
  "classifier_relaxed  | pure-classifier   | -C target-feature=+simd128     | --features relaxed-simd"
  "classifier_scalar   | pure-classifier   |                                |"
)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT_DIR="$ROOT/wasm"
die() { echo "guest/build.sh: $*" >&2; exit 2; }
trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; echo "${s%"${s##*[![:space:]]}"}"; }

CHECK=0
ONLY=()
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg (try --help)" ;;
    *) ONLY+=("$arg") ;;
  esac
done

case "${EDGEWASM_RUST:-debian}" in
  debian)
    CARGO="${EDGEWASM_CARGO:-/usr/bin/cargo}" RUSTC="${EDGEWASM_RUSTC:-/usr/bin/rustc}" TARGET=wasm32-wasi
    RUSTDOC="$(dirname "$RUSTC")/rustdoc"
    [[ -x $CARGO && -x $RUSTC ]] \
      || die "Debian's Rust toolchain is missing: apt-get install rustc cargo libstd-rust-dev-wasm32"
    compgen -G "$("$RUSTC" --print sysroot)/lib/rustlib/$TARGET/lib/libstd-*.rlib" >/dev/null \
      || die "the $TARGET standard library is missing: apt-get install libstd-rust-dev-wasm32"
    for crate in serde serde_derive serde_bytes rmp rmp-serde; do
      compgen -G "/usr/share/cargo/registry/$crate-[0-9]*" >/dev/null \
        || die "Debian's $crate crate is missing: apt-get install librust-${crate//_/-}-dev"
    done
    ;;
  rustup)
    [[ $CHECK == 0 ]] || die "--check compares with modules built by Debian's Rust 1.63; unset EDGEWASM_RUST"
    CARGO="$(command -v cargo)" || die "no cargo on PATH"
    RUSTC="$(command -v rustc)" RUSTDOC="$(command -v rustdoc || true)" TARGET=wasm32-wasip1
    rustup target list --installed 2>/dev/null | grep -qx "$TARGET" \
      || die "the rustup toolchain has no $TARGET target: rustup target add $TARGET (or use Debian's: unset EDGEWASM_RUST)"
    ;;
  *) die "EDGEWASM_RUST must be debian or rustup, not '$EDGEWASM_RUST'" ;;
esac
export RUSTC RUSTDOC CARGO_INCREMENTAL=0

# Reproducible output: the only absolute paths rustc could embed (panic locations, debug info) are remapped, so
# the modules are byte-identical whatever directory the repository is checked out in.
REMAP=("--remap-path-prefix=$HERE=/edgewasm/guest" "--remap-path-prefix=/usr/share/cargo/registry=/cargo/registry")
[[ -n ${HOME:-} && $HOME != / ]] && REMAP+=("--remap-path-prefix=$HOME=/home")
[[ -n ${CARGO_HOME:-} ]] && REMAP+=("--remap-path-prefix=$CARGO_HOME=/cargo")

if [[ $CHECK == 1 ]]; then
  DEST="$(mktemp -d "${TMPDIR:-/tmp}/edgewasm-guest-check.XXXXXX")"
  trap 'rm -rf "$DEST"' EXIT
else
  DEST="$OUT_DIR"
  mkdir -p "$DEST"
fi

names=()
for row in "${GUESTS[@]}"; do names+=("$(trim "${row%%|*}")"); done
for want in "${ONLY[@]+"${ONLY[@]}"}"; do
  [[ " ${names[*]} " == *" $want "* ]] || die "no guest named $want (see the GUESTS table in guest/build.sh)"
done

built=()
for row in "${GUESTS[@]}"; do
  IFS='|' read -r name package flags cargo_args <<<"$row"
  name="$(trim "$name")" package="$(trim "$package")" flags="$(trim "$flags")" cargo_args="$(trim "$cargo_args")"
  if [[ ${#ONLY[@]} -gt 0 && ! " ${ONLY[*]} " == *" $name "* ]]; then continue; fi
  # -C target-feature etc. plus the remapping, passed unsplit (paths may contain spaces).
  read -r -a extra_flags <<<"$flags"
  encoded="$(printf '%s\x1f' "${REMAP[@]}" "${extra_flags[@]+"${extra_flags[@]}"}")"
  read -r -a extra_args <<<"$cargo_args"
  slug="$(printf '%s' "$flags $cargo_args" | tr -cs 'A-Za-z0-9_.' '-')"
  slug="${slug#-}" slug="${slug%-}"
  target_dir="$HERE/target/${slug:-default}"
  echo "guest/build.sh: building $name (package $package${flags:+, RUSTFLAGS $flags}${cargo_args:+, $cargo_args})" >&2
  (cd "$HERE" && CARGO_ENCODED_RUSTFLAGS="${encoded%$'\x1f'}" CARGO_TARGET_DIR="$target_dir" \
    "$CARGO" build --release --offline --target "$TARGET" -p "$package" "${extra_args[@]+"${extra_args[@]}"}") \
    || die "cargo failed building $name (a crate missing from /usr/share/cargo/registry? apt-get install librust-<crate>-dev)"
  # A cdylib (reactor) is named with underscores, a bin (command guest) keeps the package's name.
  artifact="$target_dir/$TARGET/release/${package//-/_}.wasm"
  [[ -f $artifact ]] || artifact="$target_dir/$TARGET/release/$package.wasm"
  [[ -f $artifact ]] || die "cargo built no $artifact (is $package a cdylib or a bin?)"
  install -m 644 "$artifact" "$DEST/$name.wasm"
  built+=("$name")
done

if [[ $CHECK == 1 ]]; then
  differ=()
  for name in "${built[@]}"; do
    cmp -s "$DEST/$name.wasm" "$OUT_DIR/$name.wasm" || differ+=("wasm/$name.wasm")
  done
  if [[ ${#differ[@]} -gt 0 ]]; then
    echo "guest/build.sh --check: rebuilt modules differ from the committed ones: ${differ[*]} (run: bash guest/build.sh)" >&2
    exit 1
  fi
  echo "guest/build.sh --check: ${#built[@]} module(s) match wasm/: ${built[*]}" >&2
else
  for name in "${built[@]}"; do echo "wasm/$name.wasm  $(wc -c <"$DEST/$name.wasm") bytes"; done
fi
