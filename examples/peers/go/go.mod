module example.com/fdpass-peer

go 1.21

require golang.org/x/sys v0.29.0
