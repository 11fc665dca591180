// A write: needs "Authorization: Bearer <token>"; the payload's consistencyToken goes back as the
// X-Consistency-Token header of the next reads (the network layer's job).
import { graphql } from 'relay-runtime';

export const upsertDocumentMutation = graphql`
  mutation UpsertDocumentMutation($input: DocumentInput!) {
    upsertDocument(input: $input) {
      consistencyToken
      document {
        id
        ...DocumentLine_document
      }
    }
  }
`;
