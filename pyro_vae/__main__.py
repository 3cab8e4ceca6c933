from pyro_vae.cli.main import main

raise SystemExit(main())
