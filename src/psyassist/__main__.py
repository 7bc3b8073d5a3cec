"""`python -m psyassist …` (used by `accelerate launch -m psyassist train RECIPE.yaml`)."""

from psyassist.cli import main

main()
