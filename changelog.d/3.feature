Browser users chat in the same rooms as telnet users through a page and WebSocket served on port 8080, speaking a superset of the classic PHP chat protocol.
