module github.com/wakepush/wakepush/loadtest

go 1.26.8
