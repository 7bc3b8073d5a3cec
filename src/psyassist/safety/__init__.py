"""Safety: PII scrubbing of training data (and, later, crisis detection).

    python -c "from psyassist.safety.pii import scrub; print(scrub('我的电话是138 1234 5678'))"
"""
