"""Deployment of a generated accelerator: the runtime driver (:mod:`instabnn.deploy.driver`; PYNQ board and
Verilator simulation backends) and the folder to copy onto the board (:mod:`instabnn.deploy.assemble`,
``make deploy``)."""
