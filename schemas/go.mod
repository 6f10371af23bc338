module github.com/wakepush/wakepush/schemas

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	github.com/segmentio/kafka-go v0.4.51
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/klauspost/compress v1.15.9 // indirect
	github.com/pierrec/lz4/v4 v4.1.15 // indirect
)
