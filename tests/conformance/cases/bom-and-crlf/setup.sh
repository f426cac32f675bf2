# A UTF-8 byte order mark and CRLF line ends (placeholders stay on line 1).
printf '\xEF\xBB\xBFFROM {{BASE}}\r\nRUN echo crlf > /crlf.txt\r\nENV A=1 \\\r\n    B=2\r\nLABEL l="v"\r\n' > Dockerfile
