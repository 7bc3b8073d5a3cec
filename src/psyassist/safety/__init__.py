"""Safety: crisis detection with resources, PII scrubbing of training data, and the
memorization check for per-client adapters.

    psyassist safety check "我今晚就从楼上跳下去" --region cn

- `crisis`       detect(text, context=...) / scan_corpus(): levels none / concern / urgent, categories,
                 clinical constructs (C-SSRS, NSSI, Danger Assessment), evidence spans
- `guidance`     crisis_guidance(detection, region, lang=...): the instruction a model gets for a flagged turn
- `resources`    resources_for(region) / attach_resources(): hotlines with their sources
- `evalset`      the labelled evaluation set and `psyassist safety eval`
- `pii`          scrub(text, names=None): [PHONE] [EMAIL] [ID_CARD] [BANK_CARD] [ADDRESS] [NAME]
- `memorization` check_memorization(): does a client adapter recite the client's notes?

See docs/safety.md for what each catches and what it does not.
"""
