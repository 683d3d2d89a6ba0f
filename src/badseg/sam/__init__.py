"""BADSEG-SAM (§8): backdoors in prompt-conditioned masks — Mask-Distortion, -Erasure, -Injection.

``victims`` (SAM2 and the CPU-trainable effl0-sam), ``prompts`` (segments and prompts),
``targets`` (the three attacks), ``data`` (poisoned promptable sets), ``loss``, ``metrics``,
``search`` (stage 2 with a SAM surrogate), ``experiment`` (one run), ``config``.
"""
