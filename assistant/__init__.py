"""rulebook: answers staff questions about the company's rules, citing the clause that applies."""

import os

# The bundled embedder runs on OpenMP threads. Their default wait policy spins; on a machine whose
# cores are busy with other work (a shared server, a second worker, an ingest) a spinning thread
# that loses its core stalls a question's embedding for a second or more. Passive waiting costs
# nothing measurable on an idle machine and removes those stalls (eval/SCALE.md). An explicit
# setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
