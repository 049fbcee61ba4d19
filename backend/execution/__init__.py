"""Live (paper-first) execution: brokers, state, feeds, guards, supervisor client, trader."""
