tchat serves one shared chat hub to telnet and nc users with `twistd -n tchat`, configured by a validated `tap.ini`.
