# The two commands of the README:
#   make play   play the bundled model to the synth it finds (or a virtual port)
#   make test   set up everything the tests need and run them
# and, as root, make stage: install and play on a Pi-like arm64 Debian booted in qemu (tests/stage/).
PYTHON ?= python3
VENV ?= .venv
# A second, small environment with the interpreter a 32-bit Pi uses (tflite-runtime 2.14, numpy < 2),
# so every model the converter writes is checked in both interpreters.
VENV_TFLITE ?= .venv-tflite
PY := $(VENV)/bin/python
# `make play` has an environment of its own with only what playing needs (as on a Pi: no TensorFlow).
VENV_PLAY ?= .venv-play

.PHONY: play test lint stage venv venv-play venv-tflite install uninstall clean

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

$(VENV_PLAY)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV_PLAY)
	$(VENV_PLAY)/bin/python -m pip install -q --upgrade pip
	$(VENV_PLAY)/bin/python -m pip install -q -e '.[pi]'
	touch $@

venv: $(VENV)/.stamp
venv-play: $(VENV_PLAY)/.stamp
venv-tflite: $(VENV_TFLITE)/.stamp

# With no MIDI system at all (no ALSA sequencer, no JACK), it says so and renders an answer to the
# example phrase instead: cadenza-answer.mid (and .wav with fluidsynth). The keyboard is the first
# input there is (--input auto): with none it plays solo, and answers once one is plugged in.
play: venv-play
	$(VENV_PLAY)/bin/cadenza-play --or-render cadenza-answer.mid --input auto $(ARGS)

# The quality gate (settings in pyproject.toml): lint, formatting, and the player's types.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venv venv-tflite lint
	CADENZA_TFLITE_PYTHON=$(abspath $(VENV_TFLITE))/bin/python $(PY) -m pytest $(PYTEST_ARGS)

# The real stage: a Pi-like Debian 12 (arm64, systemd, the ALSA sequencer) booted in qemu; `sudo make
# install` from a copy of this tree, the service played to and broken in every way the README promises,
# a reboot, `make uninstall`. Root; the image is cached in ~/.cache/cadenza/stage (tests/stage/README.md).
stage:
	tests/stage/stage.sh

clean:
	rm -rf $(VENV) $(VENV_PLAY) $(VENV_TFLITE) .pytest_cache build *.egg-info

# ---- Installing on a Raspberry Pi (or any systemd machine) -----------------------------
# sudo make install: a virtual environment in /opt/cadenza with only the player's
# dependencies, the unit, the default model and /etc/cadenza/config.toml (kept if present).
PREFIX ?= /opt/cadenza
SYSCONFDIR ?= /etc/cadenza
UNITDIR ?= /etc/systemd/system
UDEVDIR ?= /etc/udev/rules.d
SYSTEMCTL ?= systemctl
# On 32-bit Pi OS use PI_EXTRA=pi32 (tflite-runtime with numpy < 2; see README).
PI_EXTRA ?= pi

install:
	@if [ "$$(id -u)" != 0 ] && [ -z "$(DESTDIR)" ]; then echo "make install: run it as root (sudo make install)"; exit 1; fi
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)/venv
	$(DESTDIR)$(PREFIX)/venv/bin/python -m pip install -q --upgrade pip
	$(DESTDIR)$(PREFIX)/venv/bin/python -m pip install -q '.[$(PI_EXTRA)]'
	install -d $(DESTDIR)$(PREFIX)/share $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(UNITDIR)
	install -m 0644 models/bach.cadenza models/folk.cadenza $(DESTDIR)$(PREFIX)/share/
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/README.md
	sed 's|/opt/cadenza|$(PREFIX)|g' systemd/cadenza.service > $(DESTDIR)$(UNITDIR)/cadenza.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cadenza.service
	install -d $(DESTDIR)$(UDEVDIR)
	install -m 0644 systemd/60-cadenza-cpu-dma-latency.rules $(DESTDIR)$(UDEVDIR)/60-cadenza-cpu-dma-latency.rules
	-@if [ -z "$(DESTDIR)" ] && command -v udevadm >/dev/null; then \
	  udevadm control --reload && udevadm trigger --subsystem-match=misc --sysname-match=cpu_dma_latency; fi
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/config.toml ]; then \
	  echo "keeping your $(SYSCONFDIR)/config.toml"; \
	else install -m 0644 examples/config.toml $(DESTDIR)$(SYSCONFDIR)/config.toml; fi
	@if [ -z "$(DESTDIR)" ]; then \
	  $(SYSTEMCTL) daemon-reload && $(SYSTEMCTL) enable --now cadenza.service && \
	  echo "cadenza is running: journalctl -u cadenza -f"; fi

uninstall:
	@if [ "$$(id -u)" != 0 ] && [ -z "$(DESTDIR)" ]; then echo "make uninstall: run it as root (sudo make uninstall)"; exit 1; fi
	-@if [ -z "$(DESTDIR)" ]; then $(SYSTEMCTL) disable --now cadenza.service; fi
	rm -f $(DESTDIR)$(UNITDIR)/cadenza.service $(DESTDIR)$(UDEVDIR)/60-cadenza-cpu-dma-latency.rules
	rm -rf $(DESTDIR)$(PREFIX)
	-@if [ -z "$(DESTDIR)" ]; then $(SYSTEMCTL) daemon-reload; fi
	@echo "kept $(SYSCONFDIR)/config.toml (delete it by hand if you want it gone)"
