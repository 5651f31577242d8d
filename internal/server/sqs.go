package server

import "github.com/lambdaplane/lambdaplane/internal/sqs"

// Queues exposes the SQS queue engine (the bench's floor measurement).
func (s *Server) Queues() *sqs.Queues { return s.triggers.queues }
