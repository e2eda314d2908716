"""Access governance (DESIGN.md section 10): the policy file, the decisions it drives (does a
grant need approval, when does it expire, who may approve), and the notification outbox.

Plain Python, no Dagster. The modules are imported one by one (``governance.policy``,
``governance.decisions``, ...); this package imports none of them, so ``settings.py`` can read
durations with ``governance.durations`` without loading the rest.
"""
