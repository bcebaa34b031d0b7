from multimodal.cli import main

raise SystemExit(main())
