"""Offline tools that make data and assets, each run as ``python -m tracker.tools.<name>``:
``synth300vw`` (300VW-style clips from annotated stills), ``democlip`` (the bundled demo clips),
``textures`` (the bundled face-transfer textures).  The runtime never imports them."""
