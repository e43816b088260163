module github.com/edgepass/edgepass

go 1.21
