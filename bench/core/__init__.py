"""The shared core of the benchmarks in ``bench/``.

Each script (``bench/stream.py``, ``bench/load.py``, ...) is a thin command
line over these modules and imports nothing from another script:

* ``server``: the one spawned ``hushgate serve`` (free loopback port, /readyz, log, stop);
* ``cli``: the options every bench shares and ``run_bench`` (spawn or not, run, stop);
* ``metrics`` / ``resources`` / ``measure``: the server's ``GET /metrics`` counters, CPU / RSS
  sampling, and both around one batch of concurrent sessions;
* ``audio``: the one WAV loader and the shared corpus (``../shared/audio``);
* ``wire``: the only place the benches encode and decode protocol messages;
* ``stats`` / ``table``: percentiles, WER and the printed markdown tables;
* per-bench pieces that outgrew their script: ``live`` and ``live_figures`` (paced
  streaming clients, used by stream.py and load.py), ``mix`` / ``mix_tables`` (load.py),
  ``speaker_*`` (speakers.py; evaluation in ``speaker_eval``), ``translate_sessions`` /
  ``translate_report``, ``tts_sessions``, ``texts``.

Scripts run as ``python bench/NAME.py`` from the repository root: Python puts
``bench/`` first on ``sys.path``, which is how ``import core`` resolves.
"""
