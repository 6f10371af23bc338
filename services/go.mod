module github.com/wakepush/wakepush/services

go 1.26.8
