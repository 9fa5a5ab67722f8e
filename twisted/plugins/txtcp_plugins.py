from twisted.application.service import ServiceMaker

tcp_echo = ServiceMaker("tcp-echo", "txtcp.services.echo", "TCP echo service.", "tcp-echo")
