module example.com/fdpass-peer

go 1.21
