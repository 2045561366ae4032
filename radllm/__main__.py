"""`python -m radllm ...` is the same as the `radllm` console command."""

from radllm.cli import main

raise SystemExit(main())
