# Sourced by the scripts: a Python venv with the benchmark generator's requirements (Faker,
# pyarrow, phonenumbers) and DuckDB (the benchmark's reference) in $HOME/.cache/custos/venv,
# and the 100k-row synthetic PII data set (generated once, cached) in
# $HOME/.cache/custos/pii-data. Exports CUSTOS_PYTHON and
# CUSTOS_PII_DATA, which the detector accuracy and PyArrow interop tests read.
cache="${CUSTOS_CACHE:-$HOME/.cache/custos}"
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import faker, pyarrow, phonenumbers, duckdb" 2>/dev/null; then
  echo "== python venv for test data ($venv)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/bench/requirements.txt"
fi
export CUSTOS_PYTHON="$venv/bin/python"
data="$cache/pii-data"
if [ ! -s "$data/pii_100k_truth.jsonl" ]; then
  echo "== generating the 100k-row synthetic PII data set ($data)"
  "$CUSTOS_PYTHON" "$root/bench/gen_data.py" --sizes 100000 --out "$data"
fi
export CUSTOS_PII_DATA="$data"
