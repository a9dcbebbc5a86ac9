"""Shared support for the tests and the benches (not installed): JACK servers and clients, the player
process, fake models, the simulated player rig, tiny converted bundles, MIDI files."""
