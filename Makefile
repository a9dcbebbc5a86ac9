# The two commands of the README:
#   make play   play the bundled model to the synth it finds (or a virtual port)
#   make test   set up everything the tests need and run them
PYTHON ?= python3
VENV ?= .venv
# A second, small environment with the interpreter a 32-bit Pi uses (tflite-runtime 2.14, numpy < 2),
# so every model the converter writes is checked in both interpreters.
VENV_TFLITE ?= .venv-tflite
PY := $(VENV)/bin/python

.PHONY: play test venv venv-tflite install uninstall bench clean

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[pi,train,test]'
	touch $@

$(VENV_TFLITE)/.stamp:
	$(PYTHON) -m venv $(VENV_TFLITE)
	$(VENV_TFLITE)/bin/python -m pip install -q --upgrade pip
	$(VENV_TFLITE)/bin/python -m pip install -q 'numpy<2' 'tflite-runtime==2.14.0' 'mido>=1.3'
	touch $@

venv: $(VENV)/.stamp
venv-tflite: $(VENV_TFLITE)/.stamp

play: venv
	$(VENV)/bin/cadenza-play $(ARGS)

test: venv venv-tflite
	CADENZA_TFLITE_PYTHON=$(abspath $(VENV_TFLITE))/bin/python $(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) $(VENV_TFLITE) .pytest_cache build *.egg-info
